#!/usr/bin/env bash
# Regenerates every committed result under results/ from the benchmark specs in tasks/, then
# results/README.md from the CSVs (results/readme.py), then an HTML report of them (build/report).
# Run from anywhere; about 2.5 hours on a 2-core CPU (the long-lag sweep, step 5, takes tens of
# hours more and accumulates over sittings).
# Every sweep is resumable: run this again after an interruption and only the missing runs train.
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
# the hidden-state dynamics of the same initial weights (Lyapunov exponents, Jacobians; about a
# minute on one thread), for `seqbench predict --dynamics` (results/README.md section 4)
rm -f results/fixes/dynamics_init.csv
seqbench dynamics --spec tasks/fixes.toml --profile quick --measure lyapunov --measure jacobian \
  --lag 10 --threads 1 -q -o results/fixes/dynamics_init.csv
seqbench plot spectrum results/fixes/dynamics_init.csv --task delayed_recall \
  -o results/figures/fixes_spectrum.png \
  --title "Lyapunov spectra at initialization, every arm of tasks/fixes.toml (quick)"
seqbench grads --task adding --seq-len 1000 --cell rnn --cell lstm --cell gru --cell indrnn \
  --cell exprnn --cell cornn --cell lru --cell mingru --cell minlstm --seeds 3 \
  --out results/atlas/grads.csv

# 3. Leaderboards (leaderboard.csv, leaderboard_headline.csv; the fixes with the learning rate
#    selected on validation, and every arm against the tanh RNN)
seqbench leaderboard --runs results/runs.csv --format markdown
seqbench leaderboard --runs results/fixes/runs.csv --select lr --against rnn_tanh --format markdown

# 4. Figures
seqbench plot decay results/grads.csv -o results/figures/decay_adding_T500.png
seqbench plot decay results/atlas/grads.csv -o results/figures/decay_atlas_T1000.png \
  --title "Gradient norm against lag at initialization, every cell, adding T = 1000"
seqbench plot decay results/runs --task delayed_recall --seq-len 10 --at init --at end \
  -o results/figures/decay_training_delayed_recall_T10.png
seqbench plot decay results/runs --task adding --seq-len 50 --at init --at end \
  -o results/figures/decay_training_adding_T50.png
seqbench plot decay results/fixes/runs --runs results/fixes/runs.csv --select lr --task delayed_recall \
  --at init --at end --by-family \
  -o results/figures/fixes_decay.png
seqbench plot decay results/fixes/runs --runs results/fixes/runs.csv --select lr --task adding \
  --at init --at end --by-family \
  -o results/figures/fixes_decay_adding.png
seqbench plot solve-rate results/runs.csv -o results/figures/solve_rate.png
seqbench plot loss results/runs.csv -o results/figures/loss_ratio.png
seqbench plot solved results/runs.csv -o results/figures/solved.png
seqbench plot solve-rate results/fixes/runs.csv --select lr -o results/figures/fixes_solve_rate.png

# 5. Long lags (tens of CPU-hours; resumable over sittings): the profiles committed so far, the
#    cheapest first, then the whole cpu profile (every arm at T = 100-2000: tens of CPU-hours; the
#    committed rows are the part of it run so far; runs in flight when a sitting ends continue
#    from their last checkpoint)
for profile in cpu_copy cpu_copy_confirm cpu_t500 cpu_adding_confirm cpu_cells cpu_remedies; do
  seqbench sweep tasks/long.toml --profile "$profile" --workers 2 --checkpoint-every 500 \
    --out results/long
done
seqbench sweep tasks/long.toml --profile cpu --workers 2 --checkpoint-every 500 --out results/long
rm -f results/long/dynamics_init.csv  # the dynamics commands append
seqbench dynamics --spec tasks/long.toml --profile cpu_t500 --measure lyapunov -o results/long/dynamics_init.csv
seqbench dynamics --spec tasks/long.toml --profile cpu_cells --measure lyapunov -o results/long/dynamics_init.csv
seqbench dynamics --spec tasks/long.toml --profile cpu_remedies --measure lyapunov -o results/long/dynamics_init.csv
seqbench plot spectrum results/long/dynamics_init.csv -o results/figures/long_spectrum.png
seqbench plot solve-rate results/long/runs.csv -o results/figures/long_solve_rate.png
for T in 500 1000 2000; do
  seqbench plot decay results/long/runs --runs results/long/runs.csv --task adding --seq-len "$T" \
    --at init --at end -o "results/figures/decay_long_adding_T$T.png"
done
seqbench leaderboard --runs results/long/runs.csv --format markdown

# 5b. The newer tasks against every cell (resumable; about 3 CPU-hours with one worker)
seqbench sweep tasks/new_tasks.toml --workers 2 --out results/new_tasks
seqbench leaderboard --runs results/new_tasks/runs.csv --format markdown
seqbench plot solve-rate results/new_tasks/runs.csv -o results/figures/new_tasks_solve_rate.png
seqbench sweep tasks/new_tasks.toml --profile budget --workers 2 --out results/new_tasks_budget
seqbench leaderboard --runs results/new_tasks_budget/runs.csv --format markdown

# 5c. Length generalization: trained at T = 25, tested at 50, 100, 200 (about 20 CPU-minutes)
seqbench sweep tasks/lengths.toml --workers 2 --out results/lengths
seqbench leaderboard --runs results/lengths/runs.csv --format markdown
seqbench plot lengths results/lengths/runs.csv --metric solve_rate -o results/figures/lengths.png

# 5d. Published results side by side: every arm of tasks/papers.toml at the cpu profile's 3,000 steps
#     (minutes per run at T <= 1,000; `--dry-run` estimates them)
seqbench sweep tasks/papers.toml --workers 2 --checkpoint-every 500 --out results/papers
# the budget check: disagreeing arms again at the papers' 50,000 steps (minutes to an hour a run)
seqbench sweep tasks/papers.toml --profile paper --arm urnn_adding100_lstm --arm urnn_copy100_lstm \
  --arm le_adding150_rnn_tanh --arm le_adding300_irnn --workers 2 --checkpoint-every 500 --out results/papers
seqbench published --runs results/papers/runs.csv --format markdown

# 6. results/README.md from the CSVs above (tests/test_results_readme.py checks it)
python results/readme.py

# 7. Speed: rows are appended to results/bench.csv and results/bench_sweep.csv; timings belong to
#    the machine they ran on (compare the ratios; see README.md, Performance)
seqbench bench --out results/bench.csv
seqbench bench --sweep-runs 24 -T 100 --sweep-out results/bench_sweep.csv

# 8. The HTML report of everything above (seqbench report): built on demand, not committed. With
#    a learning-curve and a gradient-vs-lag figure per run it is 175 MB (2200 PNGs, 1200 pages)
#    for the ~1000 runs here, and everything in it is rebuilt from the committed CSVs and run
#    folders. Its first build draws the 2200 figures: ~21 CPU-minutes (22 min wall with --jobs 2
#    on a busy 2-core machine); a rebuild reuses the figures of unchanged runs (~12 s), and
#    --no-run-figures builds the tables and pages alone in ~6 s (32 MB). build/ is ignored by git.
seqbench report results -o build/report --jobs 2
