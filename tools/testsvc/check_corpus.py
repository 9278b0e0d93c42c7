#!/usr/bin/python3
"""Self-check of the test-service corpus labels (run by build.sh).

Every program directory under cmd/ must have exactly one entry in
corpus.json and vice versa; every label with a "line" must point at a line
carrying a `// LEAK-SITE` marker in that program's "file"; and every marker
must be claimed by a label. So labels cannot drift from the code.
"""
import json
import os
import sys

KINDS = {"goroutine-leak", "heap-growth", "rss-growth", "thread-leak", "deadlock", None}
STATES = {"chan send", "chan receive", "select", "sync.Mutex.Lock", "sync.Cond.Wait",
          "sync.WaitGroup.Wait", "IO wait", "syscall", None}


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(root, "corpus.json")) as f:
        corpus = json.load(f)
    errors = []
    progs = corpus["programs"]
    names = [p["name"] for p in progs]
    dirs = sorted(d for d in os.listdir(os.path.join(root, "cmd"))
                  if os.path.isdir(os.path.join(root, "cmd", d)))
    if sorted(names) != dirs or len(set(names)) != len(names):
        errors.append("corpus.json programs %s != cmd/ dirs %s" % (sorted(names), dirs))
    claimed = set()
    for p in progs:
        if not isinstance(p.get("leaks"), bool):
            errors.append("%s: leaks must be true/false" % p["name"])
        if p.get("kind") not in KINDS:
            errors.append("%s: bad kind %r" % (p["name"], p.get("kind")))
        if p.get("state") not in STATES:
            errors.append("%s: bad state %r" % (p["name"], p.get("state")))
        if p["leaks"] and not p.get("kind"):
            errors.append("%s: positive without kind" % p["name"])
        if "line" not in p:
            continue
        path = os.path.join(root, "cmd", p["name"], p["file"])
        try:
            with open(path) as f:
                lines = f.read().split("\n")
        except OSError as e:
            errors.append("%s: %s" % (p["name"], e))
            continue
        ln = p["line"]
        if not (1 <= ln <= len(lines)) or "// LEAK-SITE" not in lines[ln - 1]:
            errors.append("%s: %s:%d has no // LEAK-SITE marker" % (p["name"], p["file"], ln))
        claimed.add((p["name"], p["file"], ln))
    for d in dirs:
        for fn in sorted(os.listdir(os.path.join(root, "cmd", d))):
            if not fn.endswith(".go"):
                continue
            with open(os.path.join(root, "cmd", d, fn)) as f:
                for i, line in enumerate(f.read().split("\n"), 1):
                    if "// LEAK-SITE" in line and (d, fn, i) not in claimed:
                        errors.append("unlabelled marker cmd/%s/%s:%d" % (d, fn, i))
    for e in errors:
        print("check_corpus: " + e, file=sys.stderr)
    if errors:
        sys.exit(1)
    print("check_corpus: %d programs, %d labelled sites OK" % (len(progs), len(claimed)))


if __name__ == "__main__":
    main()
