"""Feed contracts: one YAML per feed under ``schemas/feeds/<bureau>/<feed>.yaml``.

Contracts hold data only. They load into typed models; a broken contract
fails with a message naming the file and the field, e.g.
``schemas/feeds/psb/hukou.yaml: columns[3].type: unknown type 'strng'``.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipelines.settings import get_settings

ColumnType = Literal[
    "string",       # free text, trimmed only (names are never NFKC-folded)
    "code",         # identifiers/codes: trimmed, full-width folded, upper-cased
    "id_number",    # GB 11643-1999 resident identity number
    "uscc",         # GB 32100-2015 unified social credit code
    "id_or_uscc",   # either of the two (court subjects)
    "date",
    "timestamp",
    "enum",
    "decimal",
    "integer",
    "longitude",
    "latitude",
    "wkt_polygon",
    "town_name",    # one of Dongguan's 36 town-level names
    "town_code",    # their 9-digit statistical codes
    "phone",        # mainland mobile or landline
    "industry_code",  # GB/T 4754-2017 section letter + 2-4 digits
]
Sensitivity = Literal["general", "personal", "sensitive_personal"]
ShareType = Literal["unconditional", "conditional", "not_shared"]
FileType = Literal["csv", "xlsx", "jsonl"]
Cadence = Literal["hourly", "daily", "weekly", "monthly"]

_SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Column(Strict):
    """One delivered column: its Chinese header, English name, type and rules."""

    name: str
    header: str
    synonyms: tuple[str, ...] = ()
    type: ColumnType
    required: bool = False
    key: bool = False
    description: str = ""
    sensitivity: Sensitivity = "general"
    share_type: ShareType | None = None
    values: tuple[str, ...] = ()            # enum
    precision: int = 18                     # decimal
    scale: int = 2                          # decimal
    pattern: str | None = None              # extra regex on the standardised value
    gender_column: str | None = None        # id_number: check sequence parity
    birth_date_column: str | None = None    # id_number: check embedded birth date

    @model_validator(mode="after")
    def _check(self) -> "Column":
        if not _SNAKE.match(self.name):
            raise ValueError(f"name {self.name!r} must be snake_case")
        if self.name.startswith("_") or self.name in {"id", "name"}:
            raise ValueError(f"name {self.name!r} is reserved or too bare")
        if self.type == "enum" and not self.values:
            raise ValueError("enum columns need 'values'")
        if self.type != "enum" and self.values:
            raise ValueError("'values' is only for enum columns")
        if self.pattern is not None:
            re.compile(self.pattern)
        if (self.gender_column or self.birth_date_column) and self.type != "id_number":
            raise ValueError("gender_column/birth_date_column only apply to id_number")
        return self

    @property
    def headers(self) -> tuple[str, ...]:
        return (self.header, *self.synonyms)

    @property
    def default_share_type(self) -> ShareType:
        if self.share_type:
            return self.share_type
        return "conditional" if self.sensitivity != "general" else "unconditional"


class FileSpec(Strict):
    type: FileType
    encoding: Literal["utf-8", "utf-8-sig", "gbk", "gb18030", "auto"] = "auto"
    sheet: int = 0


class Contract(Strict):
    """A bureau feed: who owns it, how it arrives, and its columns."""

    feed: str = Field(description="<bureau>.<feed>")
    title: str
    owner_bureau: str
    owner_bureau_name: str
    cadence: Cadence
    # changes: each delivery adds to what earlier ones said (daily hukou
    # changes, new permits). snapshot: each delivery is the bureau's whole
    # register; once loaded it supersedes the feed's earlier deliveries, and
    # what differs from them is written to the feed's change table
    # (pipelines.lake.changes) for incremental builds
    delivery: Literal["changes", "snapshot"] = "changes"
    grain: str
    file: FileSpec
    expected_rows_per_scale: int | None = None   # rows at scale 1.0 (a band for gates)
    quarantine_threshold: float = 0.05           # share of a delivery (used by gates)
    columns: tuple[Column, ...]

    @model_validator(mode="after")
    def _check(self) -> "Contract":
        bureau, _, name = self.feed.partition(".")
        if not (_SNAKE.match(bureau) and _SNAKE.match(name)):
            raise ValueError(f"feed {self.feed!r} must look like 'bureau.feed'")
        if bureau != self.owner_bureau:
            raise ValueError(f"owner_bureau {self.owner_bureau!r} differs from feed prefix {bureau!r}")
        names = [c.name for c in self.columns]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate column names {dupes}")
        headers = [h for c in self.columns for h in c.headers]
        dup_headers = sorted({h for h in headers if headers.count(h) > 1})
        if dup_headers:
            raise ValueError(f"duplicate headers {dup_headers}")
        for index, column in enumerate(self.columns):
            for ref in (column.gender_column, column.birth_date_column):
                if ref and ref not in names:
                    raise ValueError(f"columns[{index}] refers to unknown column {ref!r}")
        if not any(c.key for c in self.columns):
            raise ValueError("at least one column must be a key")
        return self

    @property
    def bureau(self) -> str:
        return self.owner_bureau

    @property
    def feed_name(self) -> str:
        return self.feed.split(".", 1)[1]

    @property
    def slug(self) -> str:
        """``psb_hukou``: used for table and folder names."""
        return self.feed.replace(".", "_")

    @property
    def key_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.key)

    def column(self, name: str) -> Column:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(f"{self.feed}: no column {name!r}")

    def column_for_header(self) -> dict[str, Column]:
        return {h: c for c in self.columns for h in c.headers}


class ContractError(ValueError):
    """A contract file that does not load; the message names file and field."""


def _format_location(loc: tuple) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text


def format_validation_error(path: str, error: ValidationError) -> str:
    """A pydantic error as one line per field, ``path: columns[3].type: ...``
    (contracts, inspection plans)."""
    lines = []
    for item in error.errors():
        loc = _format_location(tuple(p for p in item["loc"] if p != "function-after"))
        if item["type"] == "literal_error":
            field = str(item["loc"][-1])
            message = f"unknown {field} {item['input']!r} ({item['ctx']['expected']})"
        elif item["type"] == "extra_forbidden":
            message = "unknown field"
        elif item["type"] == "missing":
            message = "field required"
        else:
            message = item["msg"].removeprefix("Value error, ")
        lines.append(f"{path}: {loc}: {message}" if loc else f"{path}: {message}")
    return "\n".join(lines)


def display_path(path: Path) -> str:
    """``path`` as the user knows it: relative to the project (schemas/...) when it is in it."""
    try:
        return str(path.resolve().relative_to(get_settings().schemas_dir.resolve().parent))
    except ValueError:
        return str(path)


def load_contract(path: Path) -> Contract:
    """Load and validate one contract file."""
    shown = display_path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ContractError(f"{shown}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ContractError(f"{shown}: expected a mapping at the top level")
    try:
        contract = Contract.model_validate(data)
    except ValidationError as exc:
        raise ContractError(format_validation_error(shown, exc)) from None
    expected = path.parent.name + "." + path.stem
    if contract.feed != expected:
        raise ContractError(f"{shown}: feed: {contract.feed!r} does not match its path ({expected!r})")
    return contract


def contract_paths(schemas_dir: Path | None = None) -> list[Path]:
    root = (schemas_dir or get_settings().schemas_dir) / "feeds"
    return sorted(root.glob("*/*.yaml"))


@lru_cache(maxsize=4)
def _load_all(schemas_dir: Path) -> dict[str, Contract]:
    contracts = {}
    for path in contract_paths(schemas_dir):
        contract = load_contract(path)
        contracts[contract.feed] = contract
    return contracts


def load_contracts(schemas_dir: Path | None = None) -> dict[str, Contract]:
    """Every feed contract, by feed name (``psb.hukou``)."""
    return dict(_load_all((schemas_dir or get_settings().schemas_dir).resolve()))


def get_contract(feed: str, schemas_dir: Path | None = None) -> Contract:
    contracts = load_contracts(schemas_dir)
    if feed not in contracts:
        known = ", ".join(sorted(contracts))
        raise ContractError(f"unknown feed {feed!r}; known feeds: {known}")
    return contracts[feed]
