"""Results CSV: header once, whole-row appends, foreign files refused, upgrades, torn lines,
concurrent writers."""

import csv
import multiprocessing
import warnings

import pytest

from seqbench.errors import ConfigError
from seqbench.results import RUN_COLUMNS, ResultsFileError, append_rows, read_results, read_rows

COLS = ["run_id", "task", "final_loss", "note"]


def lines(path):
    with open(path, newline="") as f:
        return f.read().split("\n")


def parsed(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_first_append_creates_header_then_rows_only(tmp_path):
    path = tmp_path / "sub" / "runs.csv"  # the folder is created on demand
    append_rows(path, [{"run_id": "a", "task": "adding", "final_loss": 0.5}], COLS)
    append_rows(path, [{"run_id": "b", "task": "copy", "final_loss": 0.25, "note": "x, y"}], COLS)
    rows = parsed(path)
    assert rows == [COLS, ["a", "adding", "0.5", ""], ["b", "copy", "0.25", "x, y"]]
    assert path.read_bytes().endswith(b"\n")
    df = read_results(path)
    assert list(df.columns) == COLS and list(df["run_id"]) == ["a", "b"]


def test_several_rows_in_one_append_and_value_formatting(tmp_path):
    path = tmp_path / "runs.csv"
    append_rows(path, [{"run_id": "a", "final_loss": 0.1 + 0.2}, {"run_id": "b",
                                                                  "final_loss": float("nan")}], COLS)
    rows = parsed(path)
    assert len(rows) == 3
    assert rows[1][2] == "0.30000000000000004"  # repr: floats round-trip exactly
    assert rows[2][2] == "" and rows[1][1] == "" and rows[1][3] == ""  # nan and None are empty


def test_row_with_unknown_column_is_refused_before_writing(tmp_path):
    path = tmp_path / "runs.csv"
    with pytest.raises(ValueError, match="oops"):
        append_rows(path, [{"run_id": "a", "oops": 1}], COLS)
    assert not path.exists()


def test_foreign_csv_is_refused_and_left_byte_identical(tmp_path):
    path = tmp_path / "runs.csv"
    content = b"name,score\r\nalice,3\r\nbob,4"  # someone else's file, even without a final newline
    path.write_bytes(content)
    with pytest.raises(ResultsFileError, match="refusing"):
        append_rows(path, [{"run_id": "a"}], COLS)
    assert path.read_bytes() == content
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == ["runs.csv"]


def test_csv_with_extra_columns_is_foreign_too(tmp_path):
    path = tmp_path / "runs.csv"
    content = (",".join(COLS + ["mine"]) + "\n" + "a,adding,1.0,,7\n").encode()
    path.write_bytes(content)
    with pytest.raises(ResultsFileError):
        append_rows(path, [{"run_id": "b"}], COLS)
    assert path.read_bytes() == content


def test_results_file_error_is_a_config_error():
    assert issubclass(ResultsFileError, ConfigError)


def test_older_file_with_subset_of_columns_is_upgraded(tmp_path):
    path = tmp_path / "runs.csv"
    old_cols = RUN_COLUMNS[:-2]
    new_cols = RUN_COLUMNS
    append_rows(path, [{"run_id": "r1", "seed": 0, "final_loss": 0.125},
                       {"run_id": "r2", "seed": 1, "final_loss": 0.25}], old_cols)
    append_rows(path, [{"run_id": "r3", "seed": 2, "final_loss": 0.5, new_cols[-1]: "x"}], new_cols)
    rows = parsed(path)
    assert rows[0] == new_cols
    assert len(rows) == 4 and all(len(r) == len(new_cols) for r in rows)
    by_id = {r[0]: dict(zip(new_cols, r)) for r in rows[1:]}
    assert by_id["r1"]["seed"] == "0" and by_id["r1"]["final_loss"] == "0.125"
    assert by_id["r2"]["final_loss"] == "0.25" and by_id["r2"][new_cols[-1]] == ""
    assert by_id["r3"][new_cols[-1]] == "x"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_upgrade_with_reordered_subset(tmp_path):
    """Old columns in a different order still map by name."""
    path = tmp_path / "runs.csv"
    path.write_text("task,run_id\nadding,r1\n")
    append_rows(path, [{"run_id": "r2", "task": "copy"}], COLS)
    rows = parsed(path)
    assert rows == [COLS, ["r1", "adding", "", ""], ["r2", "copy", "", ""]]


def test_torn_last_line_is_skipped_on_reading_and_cut_by_the_next_append(tmp_path):
    path = tmp_path / "runs.csv"
    append_rows(path, [{"run_id": "a", "task": "adding", "final_loss": 0.5, "note": "ok"}], COLS)
    with open(path, "a") as f:
        f.write("b,cop")  # a writer killed mid-row: no newline, too few fields
    with pytest.warns(UserWarning, match=r"skipped 1 malformed line.*line 3: 'b,cop'"):
        assert list(read_results(path)["run_id"]) == ["a"]
    with pytest.warns(UserWarning, match=r"skipped 1 malformed line.*line 3: 'b,cop'"):
        assert read_rows(path) == [{"run_id": "a", "task": "adding", "final_loss": "0.5",
                                    "note": "ok"}]
    with pytest.warns(UserWarning, match=r"removed the torn last line 3 \(5 bytes, 'b,cop'"):
        append_rows(path, [{"run_id": "c", "task": "copy", "final_loss": 0.25, "note": "ok"}], COLS)
    assert lines(path) == [",".join(COLS), "a,adding,0.5,ok", "c,copy,0.25,ok", ""]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        df = read_results(path)
    assert list(df["run_id"]) == ["a", "c"]
    assert list(df["final_loss"]) == [0.5, 0.25]


def test_torn_last_line_with_every_field_is_still_torn(tmp_path):
    """Killed inside the last field: the right number of fields, but no newline."""
    path = tmp_path / "runs.csv"
    path.write_text(",".join(COLS) + "\na,adding,0.5,complete\nb,copy,0.25,trunc")
    with pytest.warns(UserWarning, match=r"skipped 1 malformed line.*line 3"):
        df = read_results(path)
    assert list(df["run_id"]) == ["a"]


def test_torn_quoted_field_does_not_swallow_the_lines_after_it(tmp_path):
    """A legacy file where a torn row opening a quote was sealed with a newline: every other
    row is still read (one physical line per row)."""
    path = tmp_path / "runs.csv"
    path.write_text(",".join(COLS) + '\na,adding,0.5,ok\nb,copy,0.25,"x, y\nc,copy,1.0,"p, q"\n'
                    'd,adding,2.0,ok\n')
    with pytest.warns(UserWarning, match=r"skipped 1 malformed line.*line 3"):
        df = read_results(path)
    assert list(df["run_id"]) == ["a", "c", "d"] and df["note"].tolist() == ["ok", "p, q", "ok"]


def test_line_breaks_in_values_are_written_as_spaces(tmp_path):
    path = tmp_path / "runs.csv"
    append_rows(path, [{"run_id": "a", "note": "two\nlines\r\nthree\rfour"}], COLS)
    assert lines(path) == [",".join(COLS), "a,,,two lines three four", ""]


def test_header_torn_by_a_killed_first_writer_is_rewritten(tmp_path):
    path = tmp_path / "runs.csv"
    path.write_text("run_id,ta")  # the first writer died inside the header
    append_rows(path, [{"run_id": "a"}], COLS)
    assert parsed(path) == [COLS, ["a", "", "", ""]]


def test_torn_line_with_too_many_fields_is_skipped(tmp_path):
    path = tmp_path / "runs.csv"
    path.write_text(",".join(COLS) + "\na,adding,0.5,ok\nb,copy,1,2,3,4\n")
    with pytest.warns(UserWarning, match="skipped 1"):
        df = read_results(path)
    assert list(df["run_id"]) == ["a"]


def test_clean_file_reads_without_warning(tmp_path):
    path = tmp_path / "runs.csv"
    append_rows(path, [{"run_id": str(i), "final_loss": i / 4} for i in range(3)], COLS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        df = read_results(path)
    assert len(df) == 3 and df["final_loss"].tolist() == [0.0, 0.25, 0.5]


def test_read_missing_or_empty_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        read_results(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(ResultsFileError):
        read_results(tmp_path / "empty.csv")


N_PROCS, N_APPENDS = 8, 25


def _writer(path: str, proc: int) -> None:
    for i in range(N_APPENDS):
        # long rows make an interleaved or partial write visible
        append_rows(path, [{"run_id": f"p{proc}-{i}", "task": "adding", "final_loss": i,
                            "note": "z" * 3000}], COLS)


def test_concurrent_appends_from_many_processes(tmp_path):
    path = str(tmp_path / "runs.csv")
    ctx = multiprocessing.get_context("fork")  # the children only append: no torch, no threads
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*fork.*", category=DeprecationWarning)
        procs = [ctx.Process(target=_writer, args=(path, k)) for k in range(N_PROCS)]
        for p in procs:
            p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * N_PROCS
    for p in procs:
        p.close()
    rows = parsed(path)
    assert rows[0] == COLS
    body = rows[1:]
    assert len(body) == N_PROCS * N_APPENDS
    assert all(len(r) == len(COLS) and r[3] == "z" * 3000 for r in body)
    ids = [r[0] for r in body]
    assert sorted(ids) == sorted(f"p{k}-{i}" for k in range(N_PROCS) for i in range(N_APPENDS))
    # each process's rows appear in its own order
    for k in range(N_PROCS):
        mine = [int(r[0].split("-")[1]) for r in body if r[0].startswith(f"p{k}-")]
        assert mine == list(range(N_APPENDS))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(read_results(path)) == N_PROCS * N_APPENDS


def test_the_row_schema_holds_every_config_column_once():
    """RunConfig.columns() fills runs.csv columns that RUN_COLUMNS lists, one per config field
    (the cell's fields inline), so that runner, sweep and leaderboard cannot disagree."""
    from seqbench.config import RunConfig, config_column_names

    names = config_column_names()
    assert len(names) == len(set(names))
    assert set(names) <= set(RUN_COLUMNS)
    assert list(RunConfig().columns()) == names
    assert "device" not in names and "threads" not in names


def test_a_plugin_cell_gets_a_plain_run_folder_name():
    from seqbench.cells import CellConfig
    from seqbench.config import RunConfig

    name = RunConfig(cell=CellConfig(cell="torch.nn:RNNCell")).run_name()
    assert name.startswith("adding-T100-torch.nn_RNNCell-hand-s0-")
