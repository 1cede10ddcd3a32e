"""What publish registers: the lake's Delta tables and the project's views."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipelines.settings import PROJECT_ROOT, Settings, get_settings

SCHEMAS = ("silver", "base", "governance", "vault")


@dataclass(frozen=True)
class LakeTable:
    schema: str
    table: str
    folder: str        # relative to the lake root

    @property
    def location(self) -> str:
        return f"local:///{self.folder}"


def discover_tables(settings: Settings | None = None) -> list[LakeTable]:
    """Every Delta table under silver/, base/ and governance/ of the lake."""
    settings = settings or get_settings()
    root = settings.local_lake_path()
    found = []
    for log_dir in sorted(root.glob("silver/*/*/_delta_log")):
        bureau, feed = log_dir.parent.parent.name, log_dir.parent.name
        found.append(LakeTable("silver", f"{bureau}_{feed}", f"silver/{bureau}/{feed}"))
    for schema in ("base", "governance", "vault"):
        for log_dir in sorted(root.glob(f"{schema}/*/_delta_log")):
            found.append(LakeTable(schema, log_dir.parent.name, f"{schema}/{log_dir.parent.name}"))
    return found


def view_files(views_dir: Path) -> list[tuple[str, str, Path]]:
    """(schema, view, file) of every ``sql/views/<schema>/<view>.sql``."""
    return [(path.parent.name, path.stem, path) for path in sorted(views_dir.glob("*/*.sql"))]


def publishable_names(settings: Settings | None = None, views_dir: Path | None = None) -> list[tuple[str, str]]:
    """(schema, name) of every table and view ``publish`` registers or creates."""
    views_dir = views_dir or PROJECT_ROOT / "sql" / "views"
    return [(t.schema, t.table) for t in discover_tables(settings)] + [(s, v) for s, v, _ in view_files(views_dir)]
