"""PDF documents with `pypdf`: page texts joined by blank lines; corrupt, encrypted or image-only PDFs fail."""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pypdf import PdfReader
from pypdf.errors import FileNotDecryptedError, PyPdfError

from rag_assets.sources.document import LoadResult
from rag_assets.sources.files import FoundFile, Unreadable, failed, load_walked, max_bytes, read_bytes, text_document
from rag_assets.sources.spec import SourceSpec

DEFAULT_INCLUDE = ["*.pdf"]
NO_TEXT = "PDF has no extractable text (scanned?)"


@contextmanager
def quiet_pypdf() -> Iterator[None]:
    """Silence pypdf's warnings (logged and `warnings.warn`) about broken files while parsing one."""
    logger = logging.getLogger("pypdf")
    previous = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(previous)


def _open(data: bytes) -> PdfReader | Unreadable:
    """A reader for the bytes, decrypted with the empty password if need be, or why not."""
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            return Unreadable("encrypted PDF (password required)")
        if len(reader.pages) == 0:
            return Unreadable("corrupt PDF: no pages")
    except FileNotDecryptedError:
        return Unreadable("encrypted PDF (password required)")
    except PyPdfError as exc:
        return Unreadable(f"corrupt PDF: {exc}")
    except Exception as exc:  # noqa: BLE001 - pypdf raises assorted errors (KeyError, ValueError, ...) on garbage
        return Unreadable(f"corrupt PDF: {type(exc).__name__}: {exc}")
    return reader


def _title(reader: PdfReader) -> str | None:
    try:
        title = reader.metadata.title if reader.metadata else None
    except Exception:  # noqa: BLE001 - broken metadata only costs the title
        return None
    if not isinstance(title, str):
        return None
    return title.strip() or None


def pdf_text(data: bytes) -> tuple[str | None, str] | Unreadable:
    """(title from metadata, page texts joined by blank lines), or why the PDF cannot be read."""
    with quiet_pypdf():
        reader = _open(data)
        if isinstance(reader, Unreadable):
            return reader
        pages: list[str] = []
        first_error: Exception | None = None
        try:
            for page in reader.pages:
                try:
                    text = page.extract_text()
                except Exception as exc:  # noqa: BLE001 - one broken page does not lose the others
                    first_error = first_error or exc
                    continue
                if text and text.strip():
                    pages.append(text.strip())
        except Exception as exc:  # noqa: BLE001 - a broken page tree
            first_error = first_error or exc
        if not pages:
            if first_error is not None:
                return Unreadable(f"corrupt PDF: {type(first_error).__name__}: {first_error}")
            return Unreadable(NO_TEXT)
        return _title(reader), "\n\n".join(pages)


def load_pdf_file(spec: SourceSpec, found: FoundFile) -> LoadResult:
    """One PDF file as one document."""
    data = read_bytes(found.path, max_bytes(spec))
    if isinstance(data, Unreadable):
        return failed(spec, found, data.reason)
    if b"%PDF-" not in data[:1024]:
        return failed(spec, found, "corrupt PDF: no %PDF- header")
    parsed = pdf_text(data)
    if isinstance(parsed, Unreadable):
        return failed(spec, found, parsed.reason)
    title, text = parsed
    return LoadResult(documents=[text_document(spec, found, title or found.path.stem, text)])


def load_pdf(spec: SourceSpec, base_dir: Path) -> LoadResult:
    """The "pdf" kind: PDF files under the spec's paths."""
    return load_walked(spec, base_dir, DEFAULT_INCLUDE, load_pdf_file)
