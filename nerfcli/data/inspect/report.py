"""What every inspect-poses report shares: its summary rows, checks, image folders and `--json`
form. Each capture format provides its report through the protocol's `inspect(path, data)`
(nerfcli.data.formats); the CLI prints every report the same way."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass
class Check:
    name: str
    ok: bool
    message: str


@dataclass
class ImageFolder:
    """One image folder beside the poses (images/ or images_K/)."""

    folder: str  # name, e.g. "images_8"
    factor: int | None  # K of images_K; None for images/
    count: int
    height: int | None  # of the first readable image
    width: int | None


@dataclass(frozen=True)
class Row:
    """One line of a report's summary table: plain text (the printer escapes it), and a hint
    the printer shows highlighted after it."""

    name: str
    value: str
    hint: str | None = None


def number(value: float | None, digits: int = 4) -> str:
    """A summary number to `digits` significant digits; "-" where it is unknown."""
    return "-" if value is None else f"{value:.{digits}g}"


class Report:
    """What every inspect-poses report shares: its summary rows, checks and --json form.
    Subclasses are dataclasses with `path`, `checks` and `scene` fields and their own
    `summary_rows()`."""

    def summary_rows(self) -> list[Row]:
        """The summary table, in order (each format's report says what it knows)."""
        raise NotImplementedError

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [check for check in self.checks if not check.ok]

    def to_json(self) -> dict:
        """A plain dict for `--json` (the Scene is left out; its numbers are already here)."""
        doc: dict = {"path": str(self.path), "ok": self.ok}
        for item in dataclasses.fields(self):
            if item.name in ("path", "scene"):
                continue
            value = getattr(self, item.name)
            if isinstance(value, list) and value and dataclasses.is_dataclass(value[0]):
                value = [dataclasses.asdict(entry) for entry in value]
            doc[item.name] = value
        return doc
