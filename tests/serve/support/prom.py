"""Reads a Prometheus text exposition (0.0.4) on stdin and prints each sample as
NAME<TAB>LABELS<TAB>VALUE (LABELS: k=v pairs sorted, joined with ","), after two
parses that must both accept it: prometheus_client's own parser (when installed;
scripts/setup installs it) and a strict one here that checks every line's shape,
that # TYPE comes before a family's samples, and that histogram buckets are cumulative
and end with le="+Inf" equal to _count. A problem: exit 1 with it on stderr."""
import math
import re
import sys

text = sys.stdin.read()
NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
SAMPLE = re.compile(rf"^({NAME})(\{{(?:{LABEL}(?:,{LABEL})*)?\}})? (\S+)$")
problems = []
types = {}
samples = []
if not text.endswith("\n"):
    problems.append("the text does not end with a newline")
for n, line in enumerate(text.split("\n")[:-1], 1):
    if line.startswith("# HELP "):
        if not re.match(rf"^# HELP {NAME} ", line):
            problems.append(f"line {n}: bad HELP: {line!r}")
        continue
    if line.startswith("# TYPE "):
        m = re.match(rf"^# TYPE ({NAME}) (counter|gauge|histogram|summary|untyped)$", line)
        if not m:
            problems.append(f"line {n}: bad TYPE: {line!r}")
        elif m.group(1) in types:
            problems.append(f"line {n}: second TYPE for {m.group(1)}")
        else:
            types[m.group(1)] = m.group(2)
        continue
    m = SAMPLE.match(line)
    if not m:
        problems.append(f"line {n}: not a sample: {line!r}")
        continue
    name, labels, value = m.group(1), m.group(2) or "", m.group(3)
    try:
        v = float(value)
    except ValueError:
        problems.append(f"line {n}: bad value {value!r}")
        continue
    family = re.sub(r"_(bucket|sum|count)$", "", name) if re.sub(r"_(bucket|sum|count)$", "", name) in types else name
    if family not in types:
        problems.append(f"line {n}: sample of {name} before its TYPE")
    pairs = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', labels))
    samples.append((name, pairs, v))

# Histograms: cumulative buckets, +Inf last and equal to _count.
series = {}
for name, pairs, v in samples:
    if name.endswith("_bucket") and types.get(name[:-7]) == "histogram":
        key = (name[:-7], tuple(sorted((k, x) for k, x in pairs.items() if k != "le")))
        series.setdefault(key, []).append((pairs.get("le"), v))
counts = {(name[:-6], tuple(sorted(pairs.items()))): v for name, pairs, v in samples
          if name.endswith("_count") and types.get(name[:-6]) == "histogram"}
for key, buckets in series.items():
    bounds = [math.inf if le == "+Inf" else float(le) for le, _ in buckets]
    values = [v for _, v in buckets]
    if bounds != sorted(bounds) or bounds[-1] != math.inf:
        problems.append(f"{key}: buckets not ascending to +Inf: {bounds}")
    if values != sorted(values):
        problems.append(f"{key}: bucket counts not cumulative: {values}")
    if counts.get(key) != values[-1]:
        problems.append(f"{key}: +Inf bucket {values[-1]} != _count {counts.get(key)}")

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    text_string_to_metric_families = None
if text_string_to_metric_families:
    try:
        parsed = [(s.name, s.labels, s.value) for f in text_string_to_metric_families(text) for s in f.samples]
        if len(parsed) != len(samples):
            problems.append(f"prometheus_client read {len(parsed)} samples, the strict parse {len(samples)}")
    except Exception as e:  # the parser raises ValueError and others on bad input
        problems.append(f"prometheus_client: {e}")

if problems:
    print("\n".join(problems), file=sys.stderr)
    sys.exit(1)
print("parser\t" + ("prometheus_client" if text_string_to_metric_families else "strict-only") + "\t1")
for name, pairs, v in samples:
    print(f"{name}\t{','.join(f'{k}={x}' for k, x in sorted(pairs.items()))}\t{v!r}")
