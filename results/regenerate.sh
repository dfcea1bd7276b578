#!/usr/bin/env bash
# Regenerates every committed result under results/ from the benchmark specs in tasks/.
# Run from anywhere; about 1.5-2 hours on a 2-core CPU. Every sweep is resumable: run this again
# after an interruption and only the missing runs are trained.
set -euo pipefail
cd "$(dirname "$0")/.."

# 1. Training sweeps, quick profile, gradient probe on (probe_every = 500 in the specs)
for task in delayed_recall adding copy; do
  seqbench sweep "tasks/$task.toml" --profile quick --workers 2 --out results
done
seqbench sweep tasks/fixes.toml --profile quick --workers 2 --out results/fixes

# 2. Gradient against lag at initialization
seqbench grads --task adding --seq-len 500 --cell rnn --cell lstm --cell gru --seeds 3 \
  --out results/grads.csv
seqbench grads --task adding --seq-len 500 --cell lstm --forget-bias 1 --seeds 3 \
  --out results/grads.csv
seqbench grads --spec tasks/fixes.toml --profile quick --out results/fixes/grads_init.csv

# 3. Leaderboards (results/leaderboard.csv and results/leaderboard_headline.csv)
seqbench leaderboard --runs results/runs.csv --format markdown
seqbench leaderboard --runs results/fixes/runs.csv --format markdown

# 4. Figures
seqbench plot decay results/grads.csv -o results/figures/decay_adding_T500.png
seqbench plot decay results/runs --task delayed_recall --seq-len 10 --at init --at end \
  -o results/figures/decay_training_delayed_recall_T10.png
seqbench plot decay results/runs --task adding --seq-len 50 --at init --at end \
  -o results/figures/decay_training_adding_T50.png
seqbench plot decay results/fixes/runs --task delayed_recall --at init --at end --by-family \
  -o results/figures/fixes_decay.png
seqbench plot decay results/fixes/runs --task adding --at init --at end --by-family \
  -o results/figures/fixes_decay_adding.png
seqbench plot solve-rate results/runs.csv -o results/figures/solve_rate.png
seqbench plot loss results/runs.csv -o results/figures/loss_ratio.png
seqbench plot solve-rate results/fixes/runs.csv -o results/figures/fixes_solve_rate.png

# 5. Speed: rows are appended to results/bench.csv and results/bench_sweep.csv; timings belong to
#    the machine they ran on (compare the ratios; see README.md, Performance)
seqbench bench
seqbench bench --sweep-runs 24 -T 100
