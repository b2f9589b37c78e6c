#!/usr/bin/env python3
"""Seeds fuzz/corpus/TARGET/ from the contracts' own examples (../shared/contracts, or the
directory given as the first argument) and the protocol document. Run once; the corpora that
fuzzing grows from these seeds are kept in the repository."""
import hashlib, json, os, re, sys

root = os.path.dirname(os.path.abspath(__file__))
contracts = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "..", "..", "shared", "contracts")
docs = os.path.join(root, "..", "docs")


def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(root, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + hashlib.sha1(data).hexdigest()[:16]), "wb") as f:
        f.write(data)


def blocks(path, lang):
    text = open(path, encoding="utf-8").read()
    return re.findall(r"```" + lang + r"\n(.*?)```", text, re.S)


# WebSocket frames: every JSON object quoted in the protocol document.
for line in open(os.path.join(docs, "protocol.md"), encoding="utf-8"):
    for m in re.finditer(r"`(\{.*?\})`", line):
        put("ws_frame", m.group(1))
for f in ['{"type":"hello","v":1}', '{"type":"message","id":"m1","text":"Hi"}', '{"type":"history","before":5,"limit":10}',
          '{"type":"feedback","seq":3,"value":"up"}', '{"type":"identify","name":"A","email":"a@b.example"}', '{"type":"ping"}']:
    put("ws_frame", f)

# Chatwoot webhooks: the contract's JSON examples that are events, with signature headers.
for b in blocks(os.path.join(contracts, "chatwoot.md"), "json"):
    if '"event"' in b:
        put("webhook", "1767225600 sha256=" + "0" * 64 + "\n" + b)
        put("webhook", "\n" + b)

# Model streams: the `data:` lines of the OpenAI contract as one stream each block, and
# Anthropic's event/data pairs, behind the chunk-size byte.
text = open(os.path.join(contracts, "openai.md"), encoding="utf-8").read()
for b in re.findall(r"```(?:text|sse|http)?\n(.*?)```", text, re.S):
    if "data: " in b:
        put("sse", b"\x07" + b.encode())
        put("sse", b"\x00" + b.encode())

# GraphQL responses: the Magento contract's JSON examples.
for b in blocks(os.path.join(contracts, "graphql-magento.md"), "json"):
    if '"data"' in b or '"errors"' in b:
        put("graphql_extract", b)

# CMS HTML.
for h in ["<h2>Shipping</h2><p>2-4 days.</p><h2>Returns</h2><p>30 days, <b>free</b>.</p>",
          "<dl><dt>Do you ship abroad?</dt><dd>Yes, to the EU.</dd></dl>",
          "<div class='faq'><h3>Q?</h3><div>A &amp; B</div></div><script>x()</script>"]:
    put("cms_html", h)

# Settings: a picked setting (first byte) and a value.
for i, v in enumerate(["#1a73e8", "https://shop.example/graphql", "shop.example, *.shop.example", "6h",
                       "question=title,answer=content.html,id=faq_id", '{"Store": "de_de"}', "bottom-left", "42"]):
    put("settings", bytes([i * 7 % 256]) + v.encode())
