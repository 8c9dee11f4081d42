"""Generation metadata that image files carry: which tool, model, prompt and seed made them.

Read from the file's bytes, defensively (metadata is untrusted: huge chunks, bad JSON,
text that is not UTF-8, XML with entities): a part that cannot be read becomes a note,
never an exception. Sources, in order of trust:

- C2PA manifests (the active manifest's claim generator, its actions' softwareAgent and
  digitalSourceType), read with the c2pa-python library when it is installed, else only
  detected (a JUMBF 'c2pa' box) and noted;
- PNG text chunks: the Stable Diffusion web UI `parameters` text (prompt, negative prompt,
  Steps, Sampler, CFG scale, Seed, Model, Model hash, Version) and ComfyUI's `prompt`
  graph (checkpoint, sampler seed, positive text) and `workflow`;
- EXIF (Software, ImageDescription, UserComment as the web UI writes it into JPEG/WebP)
  and XMP (xmp:CreatorTool, dc:description, Iptc4xmpExt:DigitalSourceType).

`reconcile` compares what the metadata says with the labels from the folder layout or the
manifest: it fills labels they leave empty and reports conflicts, never overriding a label.
"""

from __future__ import annotations

import io
import json
import re
import struct
import zlib
from dataclasses import asdict, dataclass, field
from typing import Any
from xml.etree import ElementTree

from exprbench.labels import canonical_expression

MAX_CHUNK_BYTES = 1 << 20  # a metadata chunk (text, XMP, EXIF) larger than this is skipped
MAX_TEXT_CHARS = 4000  # prompts and names are cut to this length in the images table
MAX_SETTINGS_CHARS = 8000  # of the web UI's 'Steps: ...' line
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_NS = {
    "x": "adobe:ns:meta/",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "xmp": "http://ns.adobe.com/xap/1.0/",
    "dc": "http://purl.org/dc/elements/1.1/",
    "Iptc4xmpExt": "http://iptc.org/std/Iptc4xmpExt/2008-02-29/",
}


@dataclass
class GenerationMeta:
    """What a file says about how it was made; None where it says nothing."""

    generator: str | None = None  # the tool: 'Stable Diffusion web UI', 'ComfyUI', ...
    version: str | None = None  # the tool's version where given
    model: str | None = None  # checkpoint / model name (and hash)
    prompt: str | None = None
    seed: int | None = None
    details: dict[str, str] = field(default_factory=dict)  # sampler, steps, source type...
    sources: list[str] = field(default_factory=list)  # where each value came from
    notes: list[str] = field(default_factory=list)  # parts that could not be read

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GenerationMeta:
        return cls(**data)

    def _set(self, name: str, value: Any, source: str) -> None:
        """Set a field the first time a source gives it (sources are read by trust)."""
        if value in (None, "") or getattr(self, name) is not None:
            return
        if isinstance(value, str):
            value = _clip(value)
        setattr(self, name, value)
        if source not in self.sources:
            self.sources.append(source)

    def _detail(self, key: str, value: Any, source: str) -> None:
        if value not in (None, "") and key not in self.details:
            self.details[key] = _clip(str(value))
            if source not in self.sources:
                self.sources.append(source)


def _clip(text: str) -> str:
    text = text.replace("\x00", "").strip()
    return text if len(text) <= MAX_TEXT_CHARS else text[:MAX_TEXT_CHARS] + "…"


def _decode_text(raw: bytes, encoding: str) -> str:
    """Text from a chunk; undecodable bytes are replaced (U+FFFD), never an error."""
    return raw.decode(encoding, "replace")


# ------------------------------------------------------------------------------- PNG chunks


def _inflate(data: bytes, what: str, notes: list[str]) -> bytes | None:
    stream = zlib.decompressobj()
    try:
        out = stream.decompress(data, MAX_CHUNK_BYTES)
    except zlib.error as error:
        notes.append(f"{what}: bad compressed text ({error}); ignored")
        return None
    if stream.unconsumed_tail:
        notes.append(f"{what}: decompresses to more than {MAX_CHUNK_BYTES} bytes; ignored")
        return None
    return out


def png_chunks(data: bytes, notes: list[str]) -> tuple[dict[str, str], bytes | None, bool]:
    """PNG text chunks (tEXt, zTXt, iTXt) as {keyword: text}, the eXIf payload, and whether
    a C2PA (caBX) chunk is present. Oversized and malformed chunks are noted and skipped."""
    texts: dict[str, str] = {}
    exif: bytes | None = None
    c2pa = False
    pos = len(PNG_SIGNATURE)
    while pos + 8 <= len(data):
        length, kind_raw = struct.unpack(">I4s", data[pos : pos + 8])
        kind = kind_raw.decode("latin-1")
        body_start = pos + 8
        pos = body_start + length + 4  # data + CRC
        if pos > len(data):
            notes.append(f"PNG {kind!r} chunk runs past the end of the file; stopped reading")
            break
        if kind == "IEND":
            break
        if kind == "caBX":
            c2pa = True
            continue
        if kind not in ("tEXt", "zTXt", "iTXt", "eXIf"):
            continue
        if length > MAX_CHUNK_BYTES:
            notes.append(f"PNG {kind} chunk of {length} bytes (over {MAX_CHUNK_BYTES}); ignored")
            continue
        body = data[body_start : body_start + length]
        if kind == "eXIf":
            exif = body
            continue
        keyword_raw, sep, rest = body.partition(b"\x00")
        keyword = _decode_text(keyword_raw, "latin-1")
        if not sep or not keyword_raw:
            notes.append(f"PNG {kind} chunk without a keyword; ignored")
            continue
        text: str | None
        if kind == "tEXt":
            text = _decode_text(rest, "latin-1")
        elif kind == "zTXt":
            inflated = _inflate(rest[1:], f"PNG zTXt {keyword!r}", notes)
            text = None if inflated is None else _decode_text(inflated, "latin-1")
        else:  # iTXt: flag, method, language\0, translated keyword\0, text (UTF-8)
            if len(rest) < 2:
                notes.append(f"PNG iTXt {keyword!r} is truncated; ignored")
                continue
            compressed = rest[0] == 1
            _, _, tail = rest[2:].partition(b"\x00")
            _, _, payload = tail.partition(b"\x00")
            if compressed:
                payload = _inflate(payload, f"PNG iTXt {keyword!r}", notes) or b""
            text = _decode_text(payload, "utf-8")
            if "\ufffd" in text:
                notes.append(f"PNG iTXt {keyword!r} is not valid UTF-8; bad bytes replaced")
        if text is not None:
            texts.setdefault(keyword, text)
    return texts, exif, c2pa


# ------------------------------------------------------------------- Stable Diffusion web UI

_SD_SETTING = re.compile(r'\s*([\w ][\w \-/]*):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')


def parse_sd_parameters(text: str) -> dict[str, str]:
    """The web UI's `parameters` text: prompt, 'Negative prompt:', then a settings line
    'Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, ..., Model: name'."""
    lines = text.strip().splitlines()
    settings_at = next(
        (i for i in range(len(lines) - 1, -1, -1) if lines[i].startswith("Steps:")), len(lines)
    )
    body = lines[:settings_at]
    prompt: list[str] = []
    negative: list[str] = []
    target = prompt
    for line in body:
        if line.startswith("Negative prompt:"):
            target = negative
            line = line[len("Negative prompt:") :]
        target.append(line)
    found = {"prompt": "\n".join(prompt).strip(), "negative prompt": "\n".join(negative).strip()}
    # capped: the pattern backtracks, and real settings lines are a few hundred characters
    settings = " ".join(lines[settings_at:])[:MAX_SETTINGS_CHARS]
    for key, value in _SD_SETTING.findall(settings):
        value = value.strip()
        if value.startswith('"') and value.endswith('"'):
            try:
                value = json.loads(value)
            except ValueError:
                value = value.strip('"')
        found.setdefault(key.strip(), str(value))
    return {k: v for k, v in found.items() if v}


def _as_int(text: Any) -> int | None:
    try:
        value = int(str(text).strip())
    except ValueError:
        return None
    return value if -(2**63) <= value < 2**63 else None


def _read_sd(meta: GenerationMeta, text: str) -> None:
    source = "png:parameters"
    found = parse_sd_parameters(text)
    meta._set("generator", "Stable Diffusion web UI", source)
    meta._set("version", found.get("Version"), source)
    model = found.get("Model")
    if found.get("Model hash"):
        model = f"{model or 'model'} [{found['Model hash']}]"
    meta._set("model", model, source)
    meta._set("prompt", found.get("prompt"), source)
    meta._set("seed", _as_int(found.get("Seed")), source)
    if meta.seed is None:
        meta._detail("seed", found.get("Seed"), source)  # not a 64-bit integer: kept as text
    for key in ("negative prompt", "Steps", "Sampler", "CFG scale", "Size"):
        meta._detail(key.lower(), found.get(key), source)


# ------------------------------------------------------------------------------- ComfyUI


def _loads(text: str, what: str, notes: list[str]) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as error:
        notes.append(f"{what}: not valid JSON ({str(error)[:80]}); ignored")
        return None


def _read_comfy(meta: GenerationMeta, graph: Any, notes: list[str]) -> None:
    """ComfyUI's API graph {id: {class_type, inputs}}: checkpoint, seed, positive prompt."""
    source = "png:prompt (ComfyUI)"
    if not isinstance(graph, dict):
        notes.append("PNG 'prompt' JSON is not a ComfyUI graph (not an object); ignored")
        return
    nodes = {str(k): v for k, v in graph.items() if isinstance(v, dict)}
    meta._set("generator", "ComfyUI", source)

    def inputs(node: Any) -> dict[str, Any]:
        value = node.get("inputs") if isinstance(node, dict) else None
        return value if isinstance(value, dict) else {}

    def text_of(link: Any) -> str | None:
        if isinstance(link, list) and link:
            text = inputs(nodes.get(str(link[0]))).get("text")
            return text if isinstance(text, str) else None
        return None

    for node in nodes.values():
        kind = str(node.get("class_type", ""))
        values = inputs(node)
        if "CheckpointLoader" in kind:
            meta._set("model", values.get("ckpt_name"), source)
        if "Sampler" in kind:
            seed = values.get("seed", values.get("noise_seed"))
            meta._set("seed", _as_int(seed) if isinstance(seed, int) else None, source)
            if meta.seed is None:
                meta._detail("seed", seed, source)  # ComfyUI seeds go up to 2**64 - 1
            meta._set("prompt", text_of(values.get("positive")), source)
            meta._detail("negative prompt", text_of(values.get("negative")), source)
            for key in ("steps", "cfg", "sampler_name", "scheduler"):
                meta._detail(key, values.get(key), source)


# --------------------------------------------------------------------------- EXIF and XMP


def _user_comment(raw: Any) -> str | None:
    """EXIF UserComment: an 8-byte charset code, then the text (the web UI: UNICODE)."""
    if isinstance(raw, str):
        return raw
    if not isinstance(raw, bytes) or len(raw) < 8:
        return None
    code, body = raw[:8], raw[8:]
    if code.startswith(b"UNICODE"):
        # UTF-16 of unknown byte order: ASCII text has its zero bytes first in big-endian
        order = "utf-16-be" if body[:1] == b"\x00" else "utf-16-le"
        return body.decode(order, "replace")
    return body.decode("utf-8", "replace")


def _read_exif(meta: GenerationMeta, exif: Any) -> None:
    software = exif.get(0x0131)
    if isinstance(software, str):
        meta._set("generator", software, "exif:Software")
    description = exif.get(0x010E)
    if isinstance(description, str):
        meta._set("prompt", description, "exif:ImageDescription")
    comment = _user_comment(exif.get_ifd(0x8769).get(0x9286))
    if comment and "Steps:" in comment:
        _read_sd(meta, comment)
        meta.sources[:] = [s.replace("png:parameters", "exif:UserComment") for s in meta.sources]


def _xmp_text(root: ElementTree.Element, name: str) -> str | None:
    prefix, local = name.split(":")
    tag = f"{{{_NS[prefix]}}}{local}"
    for element in root.iter():
        value = element.attrib.get(tag)
        if value:
            return value
        if element.tag == tag:
            texts = [t.strip() for t in element.itertext() if t.strip()]
            if texts:
                return texts[0]
            resource = element.attrib.get(f"{{{_NS['rdf']}}}resource")
            if resource:
                return resource
    return None


def _read_xmp(meta: GenerationMeta, xmp: bytes | str, notes: list[str]) -> None:
    raw = xmp.encode("utf-8", "replace") if isinstance(xmp, str) else xmp
    if len(raw) > MAX_CHUNK_BYTES:
        notes.append(f"XMP of {len(raw)} bytes (over {MAX_CHUNK_BYTES}); ignored")
        return
    if b"<!DOCTYPE" in raw or b"<!ENTITY" in raw:
        notes.append("XMP declares a DTD or entities; ignored (not expanded)")
        return
    try:
        root = ElementTree.fromstring(raw.strip(b"\x00 \n\r\t"))
    except ElementTree.ParseError as error:
        notes.append(f"XMP is not well-formed XML ({error}); ignored")
        return
    meta._set("generator", _xmp_text(root, "xmp:CreatorTool"), "xmp:CreatorTool")
    meta._set("prompt", _xmp_text(root, "dc:description"), "xmp:dc:description")
    meta._detail(
        "digital source type",
        _xmp_text(root, "Iptc4xmpExt:DigitalSourceType"),
        "xmp:DigitalSourceType",
    )


# -------------------------------------------------------------------------------- C2PA


def _c2pa_present(data: bytes, png_flag: bool) -> bool:
    # a JUMBF superbox ('jumb') labelled 'c2pa': PNG caBX, JPEG APP11, WebP/others likewise
    return png_flag or (b"jumb" in data and b"c2pa" in data)


def c2pa_reader_available() -> str | None:
    """None when the c2pa-python library can read manifests here, else why not."""
    try:
        import c2pa  # noqa: F401
    except ImportError as error:
        return f"c2pa-python is not installed ({error}); C2PA manifests are only detected"
    return None


def _read_c2pa(meta: GenerationMeta, data: bytes, notes: list[str]) -> None:
    source = "c2pa"
    meta._detail("c2pa", "manifest present", source)
    if (missing := c2pa_reader_available()) is not None:
        notes.append(missing)
        return
    import c2pa

    try:
        settings = c2pa.Settings.from_dict(
            {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}
        )
        with (
            c2pa.Context(settings) as context,
            c2pa.Reader(None, io.BytesIO(data), context=context) as reader,
        ):
            store = json.loads(reader.json())
    except Exception as error:
        notes.append(f"C2PA manifest could not be read ({str(error)[:120]}); ignored")
        return
    manifest = (store.get("manifests") or {}).get(store.get("active_manifest") or "")
    if not isinstance(manifest, dict):
        notes.append("C2PA store has no active manifest; ignored")
        return
    info = manifest.get("claim_generator_info") or []
    first = info[0] if isinstance(info, list) and info and isinstance(info[0], dict) else {}
    claim_generator = first.get("name") or manifest.get("claim_generator")
    for assertion in manifest.get("assertions") or []:
        if not str(assertion.get("label", "")).startswith("c2pa.actions"):
            continue
        for action in (assertion.get("data") or {}).get("actions") or []:
            agent = action.get("softwareAgent")
            if isinstance(agent, dict):
                meta._set("generator", agent.get("name"), source)
                meta._set("version", agent.get("version"), source)
            elif isinstance(agent, str):
                meta._set("generator", agent, source)
            meta._detail("c2pa action", action.get("action"), source)
            meta._detail("digital source type", action.get("digitalSourceType"), source)
    meta._set("generator", claim_generator, source)
    meta._set("version", first.get("version"), source)
    meta._detail("c2pa claim generator", claim_generator, source)
    statuses = [s.get("code") for s in store.get("validation_status") or [] if isinstance(s, dict)]
    meta._detail("c2pa validation", ", ".join(str(s) for s in statuses) or "valid", source)


# ------------------------------------------------------------------------------- reading


def read_generation_metadata(data: bytes) -> GenerationMeta:
    """Everything `data` (an image file's bytes) says about how it was generated."""
    meta = GenerationMeta()
    notes = meta.notes
    texts: dict[str, str] = {}
    exif_raw: bytes | None = None
    png_c2pa = False
    if data.startswith(PNG_SIGNATURE):
        texts, exif_raw, png_c2pa = png_chunks(data, notes)
    if _c2pa_present(data, png_c2pa):
        _read_c2pa(meta, data, notes)
    if "parameters" in texts:
        _read_sd(meta, texts["parameters"])
    if "prompt" in texts:
        graph = _loads(texts["prompt"], "PNG 'prompt' (ComfyUI)", notes)
        if graph is not None:
            _read_comfy(meta, graph, notes)
    if "workflow" in texts and _loads(texts["workflow"], "PNG 'workflow'", notes) is not None:
        meta._set("generator", "ComfyUI", "png:workflow (ComfyUI)")
    _read_pillow(meta, data, exif_raw, texts, notes)
    for key in ("Software", "Description", "Comment", "Title"):
        if key in texts:
            target = "generator" if key == "Software" else "prompt"
            meta._set(target, texts[key], f"png:{key}")
    return meta


def _read_pillow(
    meta: GenerationMeta, data: bytes, exif_raw: bytes | None, texts: dict[str, str], notes: list
) -> None:
    """EXIF and XMP: a PNG's from its own chunks (read above), other formats' through
    Pillow (headers only, no pixel decoding)."""
    from PIL import Image

    xmp: str | bytes | None = texts.get("XML:com.adobe.xmp")
    try:
        if data.startswith(PNG_SIGNATURE):
            exif = Image.Exif()
            if exif_raw is not None:
                exif.load(exif_raw)
        else:
            with Image.open(io.BytesIO(data)) as image:
                exif = image.getexif()
                xmp = xmp or image.info.get("xmp")
        _read_exif(meta, exif)
    except Exception as error:
        notes.append(f"EXIF could not be read ({type(error).__name__}: {str(error)[:80]})")
    if xmp:
        _read_xmp(meta, xmp, notes)


# ----------------------------------------------------------------------------- labels


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def prompt_expressions(prompt: str | None) -> set[str]:
    """Canonical expressions a prompt names ('a smiling woman' -> {'happy'})."""
    if not prompt:
        return set()
    words = re.findall(r"[a-z]+", prompt.lower())
    found = {canonical_expression(w) for w in words if w not in ("none",)}
    return {e for e in found if e is not None}


def reconcile(
    generator: str, version: str, expression: str, meta: GenerationMeta | None
) -> tuple[tuple[str, str, str], list[str], list[str]]:
    """Labels filled from metadata where empty, with notes on what was filled, and the
    conflicts between metadata and the given labels (reported, never resolved).

    Generator: the metadata's tool; it conflicts when neither name contains the other
    (letters and digits only: 'gpt' and 'ChatGPT' agree). Version: the model, else the
    tool's version. Expression: only when the prompt names exactly one expression; it
    conflicts when the prompt names expressions and not the labelled one.
    """
    filled: list[str] = []
    conflicts: list[str] = []
    if meta is None:
        return (generator, version, expression), filled, conflicts
    where = ", ".join(meta.sources) or "metadata"
    if not generator and meta.generator:
        generator = meta.generator
        filled.append(f"generator from metadata ({where})")
    elif generator and meta.generator:
        a, b = _slug(generator), _slug(meta.generator)
        if a and b and a not in b and b not in a:
            conflicts.append(
                f"metadata names generator {meta.generator!r}; label says {generator!r}"
            )
    if not version and (meta.model or meta.version):
        version = str(meta.model or meta.version)
        filled.append(f"version from metadata ({where})")
    named = prompt_expressions(meta.prompt)
    if not expression and len(named) == 1:
        expression = next(iter(named))
        filled.append(f"expression from the metadata prompt ({where})")
    elif expression and named and expression not in named:
        conflicts.append(
            f"metadata prompt asks for {', '.join(sorted(named))}; label says {expression}"
        )
    return (generator, version, expression), filled, conflicts
