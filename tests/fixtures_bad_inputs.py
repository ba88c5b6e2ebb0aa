"""A folder of good and bad inputs, generated at test time, for the mixed "files" loader.

`make_bad_inputs(root)` writes the files and returns what loading them must give (with the default
10 MB limit): the documents by locator with their titles, and the failures by locator with the start
of their reason. Hidden files are written too; they must be skipped.
"""

from __future__ import annotations

import random
from pathlib import Path

BIG_FILE_BYTES = 50 * 1024 * 1024
GOOD_PDF_TEXT = "Quarterly revenue grew by twelve percent."

# What loading the folder must give: documents by locator -> title, failures by locator -> reason (start).
EXPECTED: dict[str, dict[str, str]] = {
    "documents": {"guide.md": "Deployment Guide", "report.pdf": "Quarterly Report"},
    "failures": {
        "corrupt.pdf": "corrupt PDF: ",
        "data.bin": "binary file (contains NUL bytes)",
        "nul.txt": "binary file (contains NUL bytes)",
        "latin1.txt": "invalid UTF-8 at byte 3",
        "empty.md": "empty file",
        "big.txt": "file too large: 50.0 MB > 10.0 MB limit",
        "issues.json": "malformed export: invalid JSON",
    },
}


def _pdf_string(text: str) -> str:
    return "(" + text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"


def minimal_pdf(lines: list[str], title: str | None = None) -> bytes:
    """A small valid one-page PDF showing `lines` in Helvetica (no lines: a page without text)."""
    ops = ["BT", "/F1 12 Tf", "72 720 Td"]
    for i, line in enumerate(lines):
        ops.append(("" if i == 0 else "0 -16 Td ") + f"{_pdf_string(line)} Tj")
    ops.append("ET")
    stream = "\n".join(ops).encode("latin-1") if lines else b""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
    ]
    if title is not None:
        objects.append(f"<< /Title {_pdf_string(title)} /Producer (rag-assets tests) >>".encode("latin-1"))
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    info = b" /Info 6 0 R" if title is not None else b""
    out += b"trailer\n<< /Size %d /Root 1 0 R%s >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, info, xref)
    return bytes(out)


def write_big_text(path: Path, size: int = BIG_FILE_BYTES) -> None:
    """A text file of exactly `size` bytes, written by repeating a 64-byte line."""
    line = b"This line repeats to make a very large plain text file. 0123456\n"
    count, rest = divmod(size, len(line))
    with path.open("wb") as handle:
        block = line * 16384  # 1 MiB
        for _ in range(count // 16384):
            handle.write(block)
        handle.write(line * (count % 16384) + line[:rest])


def make_bad_inputs(root: Path) -> dict:
    """Write the inputs under `root`; return a copy of `EXPECTED`."""
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(1234)

    (root / "guide.md").write_text("# Deployment Guide\n\nRun `make deploy` and watch the logs.\n", encoding="utf-8")
    (root / "report.pdf").write_bytes(minimal_pdf([GOOD_PDF_TEXT, "Costs were flat."], title="Quarterly Report"))

    (root / "corrupt.pdf").write_bytes(b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog" + rng.randbytes(2048))
    (root / "data.bin").write_bytes(b"\x00\x01\x02\x03" + rng.randbytes(4096))
    (root / "nul.txt").write_bytes(b"looks like text\x00\x00\x00but has NUL bytes\n")
    (root / "latin1.txt").write_bytes("Caf\u00e9 au lait\n".encode("latin-1"))
    (root / "empty.md").write_bytes(b"")
    write_big_text(root / "big.txt")
    (root / "issues.json").write_text('[{"number": 1, "title": "Crash on start", "body": "Steps', encoding="utf-8")

    hidden = root / ".git"
    hidden.mkdir()
    (hidden / "HEAD").write_text("ref: refs/heads/main\n", encoding="utf-8")
    (root / ".notes.md").write_text("# Hidden notes\n", encoding="utf-8")

    return {kind: dict(expected) for kind, expected in EXPECTED.items()}
