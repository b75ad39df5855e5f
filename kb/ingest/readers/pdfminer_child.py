"""Run pdfminer.six on one PDF in a separate, memory-capped process (pdfminer has no decompression limits).

Standalone on purpose: started as `python -I pdfminer_child.py`, it imports nothing from kb.
Reads the PDF from stdin; writes one JSON object per line: {"page": n, "text": ...} or {"error": kind, "reason": ...}.
"""

import argparse
import io
import json
import logging
import resource
import sys
import warnings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-pages", type=int, default=0)
    parser.add_argument("--pages", default="", help="comma-separated 1-based page numbers; empty = all")
    parser.add_argument("--memory-mb", type=int, default=1024)
    args = parser.parse_args()
    limit = args.memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")

    from pdfminer.high_level import extract_pages
    from pdfminer.layout import LAParams, LTTextContainer
    from pdfminer.pdfdocument import PDFEncryptionError, PDFPasswordIncorrect

    data = sys.stdin.buffer.read()
    wanted = [int(n) - 1 for n in args.pages.split(",") if n]
    try:
        pages = extract_pages(
            io.BytesIO(data), password="", page_numbers=wanted or None, maxpages=args.max_pages, laparams=LAParams()
        )
        for index, layout in enumerate(pages):
            text = "".join(el.get_text() for el in layout if isinstance(el, LTTextContainer))
            number = wanted[index] + 1 if wanted else index + 1
            print(json.dumps({"page": number, "text": text}), flush=True)
    except (PDFPasswordIncorrect, PDFEncryptionError) as exc:
        print(json.dumps({"error": "password", "reason": str(exc) or type(exc).__name__}), flush=True)
    except MemoryError:
        print(json.dumps({"error": "memory", "reason": "needs too much memory"}), flush=True)
    except Exception as exc:
        print(json.dumps({"error": "damaged", "reason": str(exc) or type(exc).__name__}), flush=True)


if __name__ == "__main__":
    main()
