"""Cross-language retrieval: English questions over the Chinese kit and Chinese questions over the English kit.

    PYTHONPATH=. python bench/crosslang.py [--smoke]

bench/crosslang.json holds 20 CMRC questions written in English (`cmrc_en`) and 20 SQuAD questions written
in Chinese (`squad_zh`), keyed by the kit's question id. Each kit is chunked as an upload is, embedded (default embedder)
and stored as bench/retrieval.py does, then each set is asked through kb's search in vector and hybrid
mode, next to the same 20 questions in their own language. hit@k as in bench/retrieval.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from retrieval import (
    TOP,
    Database,
    Question,
    Runtime,
    Settings,
    chunk_kit,
    default_chunk_tokens,
    embed_cached,
    fresh_database,
    get_registry,
    run_modes,
    shared_data,
    store_pieces,
)

SETS = {"cmrc_dev_kit": ("cmrc_en", "English"), "squad_dev_kit": ("squad_zh", "Chinese")}


def translated(kit: Path, key: str, limit: int | None) -> tuple[list[Question], list[Question]]:
    """(the questions in the other language, the same questions as the kit asks them)."""
    texts = json.loads((Path(__file__).with_name("crosslang.json")).read_text(encoding="utf-8"))[key]
    rows = {r["id"]: r for r in map(json.loads, (kit / "questions.jsonl").read_text(encoding="utf-8").splitlines())}
    ids = list(texts)[:limit]
    other = [Question(texts[i], rows[i]["answers"], rows[i]["doc"], rows[i]["paragraph_index"]) for i in ids]
    own = [Question(rows[i]["question"], rows[i]["answers"], rows[i]["doc"], rows[i]["paragraph_index"]) for i in ids]
    return other, own


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="three questions per set over two documents")
    args = parser.parse_args()
    url = fresh_database()
    settings = Settings(_env_file=None, database_url=url, data_dir=Path(__file__).parent / ".cache" / "data")
    db = Database(url)
    deps = Runtime(settings, db, get_registry(settings))
    embedder = deps.registry.embedder()
    print(f"embedder: {embedder.name} ({embedder.dim}-d, {embedder.variant}); top {TOP}")
    print("| questions | mode | hit@1 | hit@5 | same questions in the kit's language: hit@1 | hit@5 |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for kit_name, (key, language) in SETS.items():
        kit = shared_data() / kit_name
        other, own = translated(kit, key, 3 if args.smoke else None)
        docs = {q.doc for q in other} if args.smoke else None
        pieces, _ = chunk_kit(kit, embedder.count_tokens, max_tokens=default_chunk_tokens(embedder))
        pieces = [p for p in pieces if docs is None or p.doc in docs]
        dataset_id = store_pieces(db, kit_name, embedder, pieces, embed_cached(embedder, [p.text for p in pieces]))
        asked, same = run_modes(deps, dataset_id, other, ("vector", "hybrid")), run_modes(deps, dataset_id, own)
        for mode in ("vector", "hybrid"):
            a, s = asked[mode], same[mode]
            print(
                f"| {len(other)} {language} over {kit_name} | {mode} | {a['hit@1']:.2f} | {a['hit@5']:.2f} "
                f"| {s['hit@1']:.2f} | {s['hit@5']:.2f} |"
            )
    db.dispose()


if __name__ == "__main__":
    main()
