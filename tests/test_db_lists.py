"""db.lists.any_of: membership in a long list as one parameter, on both databases."""

from __future__ import annotations

from sqlalchemy import text

from dianfei.db.engine import Database
from dianfei.db.lists import any_of


def test_any_of_matches_strings_and_integers_and_nothing_for_an_empty_list(db: Database) -> None:
    with db.engine.begin() as conn:
        conn.execute(text("CREATE TABLE t_lists (k VARCHAR(20) PRIMARY KEY, n BIGINT)"))
        conn.execute(text("INSERT INTO t_lists (k, n) VALUES (:k, :n)"),
                     [{"k": f"K{i:05d}", "n": i} for i in range(40_000)])
        # more values than SQLite allows variables: still one parameter
        wanted = [f"K{i:05d}" for i in range(0, 40_000, 2)] + ["missing", "K'quote"]
        member, params = any_of(conn, "k", "ks", wanted)
        assert conn.execute(text(f"SELECT count(*) FROM t_lists WHERE {member}"),
                            params).scalar_one() == 20_000
        member, params = any_of(conn, "n", "ns", [1, 2, 3, 99_999], array_type="BIGINT")
        assert sorted(conn.execute(text(f"SELECT n FROM t_lists WHERE {member}"),
                                   params).scalars()) == [1, 2, 3]
        member, params = any_of(conn, "k", "none", [])
        assert conn.execute(text(f"SELECT count(*) FROM t_lists WHERE {member}"),
                            params).scalar_one() == 0


def test_rows_in_runs_a_statement_with_its_membership_test_and_other_parameters(
        db: Database) -> None:
    from dianfei.db.lists import rows_in

    with db.engine.begin() as conn:
        conn.execute(text("CREATE TABLE t_rows_in (k VARCHAR(20) PRIMARY KEY, n BIGINT)"))
        conn.execute(text("INSERT INTO t_rows_in (k, n) VALUES (:k, :n)"),
                     [{"k": f"K{i:05d}", "n": i} for i in range(40_000)])
        wanted = [f"K{i:05d}" for i in range(0, 40_000, 4)] * 2 + ["missing"]  # duplicates too
        rows = rows_in(conn, "SELECT k, n FROM t_rows_in WHERE {member} AND n >= :lo ORDER BY k",
                       "k", wanted, {"lo": 39_990})
        assert [tuple(r) for r in rows] == [("K39992", 39_992), ("K39996", 39_996)]
        assert rows_in(conn, "SELECT k FROM t_rows_in WHERE {member}", "k", []) == []
