"""HTML → text: the main content of a crawled page, without navigation, footers or boilerplate.

Trafilatura (the extractor DataTrove's and FineWeb's pipelines use) drops menus, cookie banners
and comments; its XML output is turned into one line per paragraph, heading, list item and table
row (code blocks keep their lines), so line rules see paragraphs, not the source's wrapping. Rows that are not HTML (WET
text, JSONL/Parquet documents) pass through unchanged, so the stage is safe on mixed inputs.
Its duplicate-line cache is off: it is shared across documents, so a document's text would
depend on which documents a worker saw before it, and a resumed run could differ.
"""
from __future__ import annotations

import logging

import pyarrow as pa

from schemas.engine.stage import TaskStage, annotate, unknown_parameter
from schemas.tables import field
from schemas.warc import HTML_TYPES, WEB_FIELDS

SETTINGS = ("favor_precision", "include_tables", "include_comments", "max_html_chars")
BREAK = "\ue000"  # a <br> inside a paragraph, kept through whitespace collapsing (private use, not space)


def _norm(el) -> str:
    return " ".join("".join(el.itertext()).split()).replace(BREAK, "\n").replace("\n ", "\n").strip()


SEPARATE = ("list", "table", "code")  # blocks inside a list item that stay lines of their own


def _item_lines(item, out: list[str]) -> None:
    """A list item is one block, as in trafilatura's text output and so in the lines FineWeb's and
    C4's rules were defined on: its text and its own paragraphs join into one "- " line (a
    definition's two paragraphs are one item); a nested list, table or code block inside it
    keeps its own lines. Split apart, short sentences of different items ("Raised by the asyncio
    stream APIs.") become lines of their own that repeat, and FineWeb's duplicated-line rule,
    meant for repeated blocks (boilerplate, templates), counts them."""
    parts: list[str] = [item.text or ""]
    dash = "- "

    def flush() -> None:
        nonlocal dash
        text = " ".join("".join(parts).split()).replace(BREAK, "\n").replace("\n ", "\n").strip()
        if text:
            out.append(dash + text)
            dash = ""
        parts.clear()

    for child in item:
        if child.tag in SEPARATE:
            flush()
            _lines([child], out)
        elif child.tag in ("p", "quote", "head"):  # a paragraph: apart from its neighbours by a space
            parts.append(" " + "".join(child.itertext()) + " ")
        elif child.tag not in ("graphic", "lb"):  # inline (hi, ref): part of the running text
            parts.append("".join(child.itertext()))
        parts.append(child.tail or "")
    flush()


def _lines(el, out: list[str]) -> None:
    """One line per paragraph, heading, list item and table row of trafilatura's XML; a source's
    hard-wrapped paragraph becomes one line again (its text output keeps the HTML's newlines,
    which line rules such as C4's would then cut as fragments)."""
    for child in el:
        tag = child.tag
        if tag == "list":
            for item in child.iterchildren("item"):
                _item_lines(item, out)
        elif tag == "table":
            for row in child.iter("row"):
                cells = [_norm(c) for c in row.iterchildren("cell")]
                if any(cells):
                    out.append(" | ".join(cells))
        elif tag == "code":
            out.extend(ln for ln in "".join(child.itertext()).strip("\n").split("\n"))
        elif tag in ("p", "head", "quote", "item"):
            if any(c.tag in ("p", "list", "table") for c in child):
                _lines(child, out)
            else:
                text = _norm(child)
                out.append(text) if text else None
        elif tag in ("graphic", "lb"):
            continue
        else:
            _lines(child, out)


def xml_to_text(xml: str) -> str:
    from lxml import etree
    root = etree.fromstring(xml.encode("utf-8"), etree.XMLParser(huge_tree=True, recover=True))
    if root is None:
        return ""
    for lb in root.iter("lb"):
        lb.tail = BREAK + (lb.tail or "")
    out: list[str] = []
    main = root.find("main")
    _lines(main if main is not None else root, out)
    return "\n".join(out)


def trafilatura_xml(html: str, url: str | None, favor_precision: bool, include_tables: bool,
                    include_comments: bool) -> str | None:
    """`trafilatura.extract(html, output_format="xml", deduplicate=False)` without the content
    fingerprint `extract` puts on every non-text output (the `<doc fingerprint=...>` attribute, a
    simhash of the whole text: ~10% of the extraction's CPU, read by nothing here)."""
    from trafilatura.core import Document, bare_extraction, determine_returnstring
    from trafilatura.settings import Extractor
    options = Extractor(output_format="xml", precision=favor_precision, tables=include_tables,
                        comments=include_comments, dedup=False, url=url, with_metadata=False)
    document = bare_extraction(html, options=options)
    if not document or not isinstance(document, Document):
        return None
    return determine_returnstring(document, options)


class HtmlExtractor(TaskStage):
    """Stage: `text` of HTML rows becomes its main content; nothing left is `extraction_empty`."""
    name = "extract"
    kind = "task"
    adds = [*WEB_FIELDS, field("html_chars", pa.int32(), stats="hist:0:200000:20")]

    def __init__(self, favor_precision: bool = True, include_tables: bool = True, include_comments: bool = False,
                 max_html_chars: int = 5_000_000, column: str = "text"):
        logging.getLogger("trafilatura").setLevel(logging.ERROR)  # per-page notes are not run errors
        self.settings = {"favor_precision": favor_precision, "include_tables": include_tables,
                         "include_comments": include_comments}
        self.max_html_chars, self.column = max_html_chars, column

    @classmethod
    def validate(cls, **params) -> None:
        problem = unknown_parameter(params, [*SETTINGS, "column"])
        if problem:
            raise TypeError(problem)
        if params.get("max_html_chars", 1) < 1:
            raise TypeError(f"max_html_chars must be at least 1, not {params['max_html_chars']}")

    @classmethod
    def model_info(cls, **params) -> dict:
        """Lineage: which extractor, which version, which settings made the text."""
        from importlib.metadata import version
        defaults = {"favor_precision": True, "include_tables": True, "include_comments": False,
                    "max_html_chars": 5_000_000}
        return {"extractor": "trafilatura", "version": version("trafilatura"), "lxml": version("lxml"),
                "settings": {**defaults, **{k: v for k, v in params.items() if k in SETTINGS},
                             "deduplicate": False, "output_format": "xml, one line per block"}}

    def extract_one(self, html: str, url: str | None) -> tuple[str | None, str | None, str | None]:
        """(text, reason, detail) of one page."""
        if len(html) > self.max_html_chars:
            return None, "html_too_large", f"{len(html):,} chars > {self.max_html_chars:,}"
        try:
            xml = trafilatura_xml(html, url, **self.settings)
            text = xml_to_text(xml) if xml else None
        except Exception as e:  # noqa: BLE001 - a page the parser cannot take is that page's reject
            return None, f"extraction_failed:{type(e).__name__}", str(e)[:300]
        if not text or not text.strip():
            return None, "extraction_empty", None
        return text.strip(), None, None

    def __call__(self, batch: pa.Table) -> pa.Table:
        texts = batch.column(self.column).to_pylist()
        types = batch.column("content_type").to_pylist() if "content_type" in batch.column_names \
            else [None] * batch.num_rows
        urls = batch.column("url").to_pylist() if "url" in batch.column_names else [None] * batch.num_rows
        out: list[str | None] = []
        sizes: list[int | None] = []
        reasons: list[str | None] = []
        details: list[str | None] = []
        for text, ctype, url in zip(texts, types, urls):
            if ctype not in HTML_TYPES or text is None:
                out.append(text)
                sizes.append(None)
                reasons.append(None)
                details.append(None)
                continue
            extracted, reason, detail = self.extract_one(text, url)
            out.append(extracted if extracted is not None else text[:2000])  # a reject keeps the page's start
            sizes.append(len(text))
            reasons.append(reason)
            details.append(detail)
        batch = annotate(batch, **{self.column: pa.array(out, pa.string()), "html_chars": pa.array(sizes, pa.int32())})
        return annotate(batch, drop_reason=pa.array(reasons, pa.string()), reject_detail=pa.array(details, pa.string()))

    def params(self) -> dict:
        return {**self.settings, "max_html_chars": self.max_html_chars, "column": self.column}
