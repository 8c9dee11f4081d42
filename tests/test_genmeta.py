"""Generation metadata: real PNG/JPEG files written by Pillow (and signed by c2pa-python),
hostile chunks, and labels filled or contradicted through the ingest stage."""

from __future__ import annotations

import io
import json
import struct
import time
import zlib
from pathlib import Path

from PIL import Image, ImageOps
from PIL.PngImagePlugin import PngInfo

from exprbench.config import Layout
from exprbench.genmeta import (
    MAX_CHUNK_BYTES,
    GenerationMeta,
    parse_sd_parameters,
    read_generation_metadata,
    reconcile,
)
from exprbench.ingest import PROVENANCE_COLUMNS, provenance_note
from exprbench.schema import IMAGES, QUARANTINE, read_table
from exprbench.settings import Settings, load_params
from tasks.ingest import ingest
from tests.conftest import import_or_missing

PARAMS = Settings.from_params(load_params(Path(__file__).resolve().parent.parent / "params.yaml"))

SD_TEXT = (
    "portrait photo of a woman, (smiling:1.2), studio light\n"
    "Negative prompt: blurry, lowres\n"
    "Steps: 30, Sampler: DPM++ 2M Karras, CFG scale: 6.5, Seed: 1234567890, Size: 512x512, "
    'Model hash: 31e35c80fc, Model: sd_xl_base_1.0, Lora hashes: "a: 1, b: 2", Version: v1.6.0'
)
COMFY_GRAPH = {
    "3": {
        "class_type": "KSampler",
        "inputs": {
            "seed": 42,
            "steps": 20,
            "cfg": 7.0,
            "sampler_name": "euler",
            "scheduler": "normal",
            "positive": ["6", 0],
            "negative": ["7", 0],
            "model": ["4", 0],
        },
    },
    "4": {
        "class_type": "CheckpointLoaderSimple",
        "inputs": {"ckpt_name": "dreamshaper_8.safetensors"},
    },
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a sad old man, photo"}},
    "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "watermark"}},
}
XMP = b"""<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF
 xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description
 xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/"
 xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
 xmp:CreatorTool="Adobe Firefly Image 3"
 Iptc4xmpExt:DigitalSourceType="http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia">
 <dc:description><rdf:Alt><rdf:li xml:lang="x-default">a woman looking astonished</rdf:li></rdf:Alt>
 </dc:description></rdf:Description></rdf:RDF></x:xmpmeta>"""


def _face(photos: dict[str, Path], name: str = "grace_hopper") -> Image.Image:
    return ImageOps.fit(Image.open(photos[name]).convert("RGB"), (160, 200))


def _png(image: Image.Image, info: PngInfo | None = None) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _insert(png: bytes, *chunks: bytes) -> bytes:
    """`png` with raw chunks inserted before IDAT (where generators write their text)."""
    at = png.index(b"IDAT") - 4
    return png[:at] + b"".join(chunks) + png[at:]


def test_stable_diffusion_web_ui_parameters(photos):
    info = PngInfo()
    info.add_text("parameters", SD_TEXT)
    meta = read_generation_metadata(_png(_face(photos), info))
    assert meta.generator == "Stable Diffusion web UI" and meta.version == "v1.6.0"
    assert meta.model == "sd_xl_base_1.0 [31e35c80fc]"
    assert meta.prompt == "portrait photo of a woman, (smiling:1.2), studio light"
    assert meta.seed == 1234567890
    assert meta.details["negative prompt"] == "blurry, lowres"
    assert meta.details["sampler"] == "DPM++ 2M Karras" and meta.details["cfg scale"] == "6.5"
    assert meta.sources == ["png:parameters"] and meta.notes == []
    assert parse_sd_parameters(SD_TEXT)["Lora hashes"] == "a: 1, b: 2"  # quoted, with commas


def test_comfyui_prompt_graph_in_compressed_itxt(photos):
    info = PngInfo()
    info.add_itxt("prompt", json.dumps(COMFY_GRAPH), zip=True)
    info.add_text("workflow", json.dumps({"nodes": [], "links": []}))
    meta = read_generation_metadata(_png(_face(photos), info))
    assert (meta.generator, meta.model, meta.seed) == ("ComfyUI", "dreamshaper_8.safetensors", 42)
    assert meta.prompt == "a sad old man, photo"
    assert meta.details["negative prompt"] == "watermark" and meta.details["steps"] == "20"


def test_jpeg_exif_user_comment_software_and_xmp(photos):
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\x00" + SD_TEXT.encode("utf-16-be")
    buffer = io.BytesIO()
    _face(photos).save(buffer, format="JPEG", exif=exif)
    meta = read_generation_metadata(buffer.getvalue())
    assert meta.generator == "Stable Diffusion web UI" and meta.seed == 1234567890
    assert meta.sources == ["exif:UserComment"]

    exif = Image.Exif()
    exif[0x0131] = "Adobe Photoshop 26.0"
    buffer = io.BytesIO()
    _face(photos).save(buffer, format="JPEG", exif=exif, xmp=XMP)
    meta = read_generation_metadata(buffer.getvalue())
    assert meta.generator == "Adobe Photoshop 26.0"  # EXIF Software is read before XMP
    assert meta.prompt == "a woman looking astonished"
    assert meta.details["digital source type"].endswith("/trainedAlgorithmicMedia")
    assert meta.sources == ["exif:Software", "xmp:dc:description", "xmp:DigitalSourceType"]


def test_hostile_metadata_becomes_notes_never_a_crash(photos):
    png = _png(_face(photos))
    nested = "[" * 200_000 + "]" * 200_000
    hostile = _insert(
        png,
        _chunk(b"tEXt", b"parameters\x00" + b"x" * (MAX_CHUNK_BYTES + 1)),
        _chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(b"\x00" * (50 << 20))),
        _chunk(b"tEXt", b"prompt\x00{not json"),
        _chunk(b"tEXt", b"workflow\x00" + nested.encode()),
        _chunk(b"iTXt", b"Description\x00\x00\x00\x00\x00" + b"caf\xe9 \xff\xfe"),
        _chunk(
            b"iTXt",
            b"XML:com.adobe.xmp\x00\x00\x00\x00\x00"
            + b'<!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>',
        ),
        _chunk(b"tEXt", b"\x00no keyword"),
    )
    meta = read_generation_metadata(hostile)
    notes = " | ".join(meta.notes)
    for words in (
        f"over {MAX_CHUNK_BYTES}",
        "decompresses to more than",
        "'prompt' (ComfyUI): not valid JSON",
        "'workflow': not valid JSON",
        "not valid UTF-8; bad bytes replaced",
        "XMP declares a DTD or entities",
        "without a keyword",
    ):
        assert words in notes, f"{words!r} not in {notes}"
    assert meta.generator is None and meta.prompt == "caf\ufffd \ufffd\ufffd"
    # a seed past 64 bits (ComfyUI allows 2**64 - 1) and a settings line built to backtrack
    graph = json.loads(json.dumps(COMFY_GRAPH))
    graph["3"]["inputs"]["seed"] = 2**64 - 1
    info = PngInfo()
    info.add_text("prompt", json.dumps(graph))
    big = read_generation_metadata(_png(_face(photos), info))
    assert big.seed is None and big.details["seed"] == str(2**64 - 1)
    info = PngInfo()
    info.add_text("parameters", "x\nSteps: " + "a" * (MAX_CHUNK_BYTES - 100))
    started = time.perf_counter()
    assert read_generation_metadata(_png(_face(photos), info)).prompt == "x"
    assert time.perf_counter() - started < 5
    # a file cut short inside a chunk, and one that is not an image at all
    assert "runs past the end" in " ".join(read_generation_metadata(png[:60]).notes)
    garbage = read_generation_metadata(b"jumb c2pa " + b"\x00" * 100)
    assert garbage.details["c2pa"] == "manifest present" and garbage.notes  # noted, not read


def _signed_png(image: Image.Image) -> bytes:
    """A real C2PA manifest signed with a throwaway certificate chain made here."""
    import datetime

    c2pa = import_or_missing("c2pa", "pip install c2pa-python (see pyproject.toml)")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(common: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, common),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "exprbench test"),
            ]
        )

    now = datetime.datetime.now(datetime.UTC)

    def certificate(subject, issuer, key, signer, ca: bool):
        usage = dict.fromkeys(
            (
                "content_commitment",
                "key_encipherment",
                "data_encipherment",
                "key_agreement",
                "encipher_only",
                "decipher_only",
            ),
            False,
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(
                x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True
            )
            .add_extension(
                x509.KeyUsage(digital_signature=not ca, key_cert_sign=ca, crl_sign=ca, **usage),
                critical=True,
            )
        )
        if ca:
            builder = builder.add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
        else:  # an end-entity certificate as C2PA requires: EKU and the issuer's key id
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False
            ).add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
                critical=False,
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = certificate(name("test ca"), name("test ca"), ca_key, ca_key, True)
    leaf = certificate(name("test signer"), ca.subject, key, ca_key, False)
    pem = serialization.Encoding.PEM
    signer = c2pa.Signer.from_info(
        c2pa.C2paSignerInfo(
            alg=b"es256",
            sign_cert=leaf.public_bytes(pem) + ca.public_bytes(pem),
            private_key=key.private_bytes(
                pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
            ta_url=None,
        )
    )
    manifest = {
        "claim_generator_info": [{"name": "TestGen", "version": "7.1"}],
        "title": "face.png",
        "format": "image/png",
        "assertions": [
            {
                "label": "c2pa.actions",
                "data": {
                    "actions": [
                        {
                            "action": "c2pa.created",
                            "digitalSourceType": "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia",
                            "softwareAgent": {"name": "TestGen Image", "version": "7.1"},
                        }
                    ]
                },
            }
        ],
    }
    out = io.BytesIO()
    with c2pa.Builder(json.dumps(manifest)) as builder:
        builder.sign(signer, "image/png", io.BytesIO(_png(image)), out)
    return out.getvalue()


def test_c2pa_manifest_is_read_offline(photos):
    meta = read_generation_metadata(_signed_png(_face(photos)))
    assert (meta.generator, meta.version) == ("TestGen Image", "7.1")  # the action's agent
    assert meta.details["c2pa claim generator"] == "TestGen"
    assert meta.details["c2pa action"] == "c2pa.created"
    assert meta.details["digital source type"].endswith("/trainedAlgorithmicMedia")
    # signed by a certificate no trust list knows: read, and said so
    assert "signingCredential.untrusted" in meta.details["c2pa validation"]
    assert meta.sources == ["c2pa"] and meta.notes == []


def test_reconcile_fills_empty_labels_and_reports_conflicts():
    meta = GenerationMeta(generator="ChatGPT", model=None, version="4o", prompt="a smiling man")
    assert reconcile("", "", "", meta)[0] == ("ChatGPT", "4o", "happy")
    (_, _, _), filled, conflicts = reconcile("gpt", "4o", "happy", meta)
    assert filled == [] and conflicts == []  # 'gpt' is within 'ChatGPT'; prompt agrees
    _, _, conflicts = reconcile("midjourney", "v6", "sad", meta)
    assert conflicts == [
        "metadata names generator 'ChatGPT'; label says 'midjourney'",
        "metadata prompt asks for happy; label says sad",
    ]
    # a prompt naming two expressions does not fill one
    two = GenerationMeta(prompt="from sad to happy")
    assert reconcile("g", "v", "", two)[0] == ("g", "v", "")


def test_ingest_fills_labels_from_metadata_and_flags_conflicts(tmp_path, photos):
    raw = tmp_path / "raw"
    sd = PngInfo()
    sd.add_text("parameters", SD_TEXT)  # asks for a smile
    comfy = PngInfo()
    comfy.add_itxt("prompt", json.dumps(COMFY_GRAPH), zip=True)  # asks for sadness
    files = {
        "folder/sdxl/v1/ann/sad.png": _png(_face(photos), sd),
        "folder/sdxl/v1/ann/neutral.png": _png(_face(photos, "obama"), sd),
        "batch/0001.png": _png(_face(photos, "biden"), comfy),
        "batch/0002.png": _png(_face(photos, "astronaut")),
    }
    for rel, data in files.items():
        (raw / rel).parent.mkdir(parents=True, exist_ok=True)
        (raw / rel).write_bytes(data)
    (raw / "manifest.csv").write_text(
        "path,generator,version,subject,expression\n"
        "folder/sdxl/v1/ann/sad.png,Stable Diffusion,xl,ann,sad\n"
        "folder/sdxl/v1/ann/neutral.png,sd-web-ui,xl,ann,neutral\n"
        "batch/0001.png,,,bob,\n"
        "batch/0002.png,,,bob,happy\n"
    )
    layout = Layout.for_output(raw, tmp_path / "out")
    ingest.fn(layout, PARAMS)
    images = {r["path"]: r for r in read_table(layout.images, IMAGES).to_pylist()}
    reasons = {
        r["path"]: r["reason"] for r in read_table(layout.quarantine, QUARANTINE).to_pylist()
    }
    sad = images["folder/sdxl/v1/ann/sad.png"]
    assert sad["label_conflict"] == "metadata prompt asks for happy; label says sad"
    assert "metadata conflict: metadata prompt asks for happy" in sad["flags"]
    assert sad["meta_seed"] == 1234567890 and sad["meta_model"] == "sd_xl_base_1.0 [31e35c80fc]"
    assert json.loads(sad["meta_details"])["sampler"] == "DPM++ 2M Karras"
    note = provenance_note(sad)
    assert note is not None and "LABEL CONFLICT" in note and "png:parameters" in note
    # the report reads only PROVENANCE_COLUMNS of an image for its note
    assert provenance_note({k: sad[k] for k in PROVENANCE_COLUMNS}) == note
    neutral = images["folder/sdxl/v1/ann/neutral.png"]
    assert (
        "generator 'Stable Diffusion web UI'; label says 'sd-web-ui'" in neutral["label_conflict"]
    )
    assert "asks for happy; label says neutral" in neutral["label_conflict"]
    filled = images["batch/0001.png"]
    assert (filled["generator"], filled["version"], filled["expression"]) == (
        "ComfyUI",
        "dreamshaper_8.safetensors",
        "sad",
    )
    assert "expression from the metadata prompt" in filled["flags"]
    assert filled["label_conflict"] is None
    assert "no generator/version" in reasons["batch/0002.png"]
    assert len(images) + len(reasons) == 4
