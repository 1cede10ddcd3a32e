"""The demo calls a failed DAG run "by design" only when the generator planted its cause (issue 21)."""

from __future__ import annotations

from pipelines.dev.demo import mark_planted_failures
from pipelines.settings import get_settings


def test_only_failures_with_a_planted_cause_are_by_design(tmp_path):
    truth = tmp_path / "truth"
    truth.mkdir()
    (truth / "files.csv").write_text(
        "file,feed,expected_status,replaces_file,records,layout\n"
        "psb/hukou/a.csv,psb.hukou,loaded,,10,csv\n"
        "amr/penalty/b.csv,amr.penalty,rejected,,0,csv\n", encoding="utf-8")
    runs = [{"dag_id": "feed__amr_penalty", "state": "failed"},        # planted: a file expected rejected
            {"dag_id": "feed__mca_death", "state": "failed"},          # planted: the gate blocked a delivery
            {"dag_id": "feed__psb_hukou", "state": "failed"},          # nothing planted
            {"dag_id": "library__population", "state": "failed"},      # never planted
            {"dag_id": "feed__tax_taxpayer", "state": "success"}]
    summary = {"ok": True, "notes": [], "blocked": [{"feed": "mca.death", "load_id": "x", "file": "d.csv"}]}
    mark_planted_failures(runs, summary, tmp_path, get_settings())
    assert [r["planted"] for r in runs] == [True, True, False, False, False]
    assert summary["ok"] is False
    assert summary["notes"] == ["UNEXPECTED: DAG feed__psb_hukou ended failed",
                                "UNEXPECTED: DAG library__population ended failed"]


def test_planted_failures_alone_keep_the_demo_ok(tmp_path):
    (tmp_path / "truth").mkdir()
    (tmp_path / "truth" / "files.csv").write_text(
        "file,feed,expected_status,replaces_file,records,layout\n"
        "amr/penalty/b.csv,amr.penalty,rejected,,0,csv\n", encoding="utf-8")
    runs = [{"dag_id": "feed__amr_penalty", "state": "failed"}]
    summary = {"ok": True, "notes": [], "blocked": []}
    mark_planted_failures(runs, summary, tmp_path, get_settings())
    assert runs[0]["planted"] is True and summary["ok"] is True and summary["notes"] == []
