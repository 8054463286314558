"""Secrets (API keys, tokens, private keys, passwords) with detect-secrets' rule set, as spans.

The rules are Yelp's `detect-secrets` (1.5.0, Apache-2.0), used through its public plugin API,
not a hand-grown list: every regex-based plugin's `denylist` (AWS, GitHub, GitLab, Slack,
Stripe, JWT, private-key headers, basic-auth URLs, Twilio, SendGrid, npm, PyPI, OpenAI, Discord,
Telegram, Mailchimp, Square, Azure, Artifactory, IBM/Cloudant/SoftLayer), each plugin's own
validation where it has one (`JwtTokenDetector.is_formally_valid`), and its `KeywordDetector`
for `password = ...` style assignments, filtered with its heuristics (indirect references,
templates, `$VARS`, sequential and id-like strings). detect-secrets reports lines and values,
not offsets: we find the values' offsets ourselves. Two additions it lacks: a private key is
redacted from its BEGIN line to its END line (it flags only the header), and Google API keys
(`AIza` + 35 characters, Google's documented format).

Spans get one type per issuer (AWS_ACCESS_KEY, GITHUB_TOKEN, ...) so redactions are counted
by type; SECRET is the type of a rule with no issuer of its own.
"""
from __future__ import annotations

import functools
import re
from typing import Any

from presidio_analyzer import RecognizerResult

# detect-secrets plugin class -> our entity type
PLUGIN_TYPES = {
    "AWSKeyDetector": "AWS_ACCESS_KEY", "GitHubTokenDetector": "GITHUB_TOKEN", "GitLabTokenDetector": "GITLAB_TOKEN",
    "SlackDetector": "SLACK_TOKEN", "StripeDetector": "STRIPE_KEY", "JwtTokenDetector": "JWT",
    "BasicAuthDetector": "URL_PASSWORD", "TwilioKeyDetector": "TWILIO_KEY", "SendGridDetector": "SENDGRID_KEY",
    "NpmDetector": "NPM_TOKEN", "PypiTokenDetector": "PYPI_TOKEN", "OpenAIDetector": "OPENAI_KEY",
    "DiscordBotTokenDetector": "DISCORD_TOKEN", "TelegramBotTokenDetector": "TELEGRAM_TOKEN",
    "MailchimpDetector": "MAILCHIMP_KEY", "SquareOAuthDetector": "SQUARE_SECRET", "AzureStorageKeyDetector":
    "AZURE_KEY", "ArtifactoryDetector": "ARTIFACTORY_TOKEN", "IbmCloudIamDetector": "SECRET",
    "IbmCosHmacDetector": "SECRET", "CloudantDetector": "SECRET", "SoftlayerDetector": "SECRET",
}
# entropy detectors fire on every hash and UUID; public IPs are IP_ADDRESS already
SKIP = {"Base64HighEntropyString", "HexHighEntropyString", "IPPublicDetector", "KeywordDetector",
        "PrivateKeyDetector"}
GOOGLE_API_KEY = re.compile(r"(?<![\w-])AIza[0-9A-Za-z_\-]{35}(?![\w-])")
PEM = re.compile(r"-----BEGIN ((?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?)-----(?:.|\n)*?"
                 r"(?:-----END \1-----|\Z)")
PUTTY = re.compile(r"PuTTY-User-Key-File-\d:(?:.|\n)*?Private-MAC: \w+")
# the keyword plugin, where a line names a credential (detect-secrets' own list is wider; this is
# the gate that lets a line reach it)
KEYWORD_GATE = re.compile(r"(?i)pass|pwd|secret|token|api_?key|auth|credential|private_?key")
CONFIG_LINE = re.compile(r"^\s*[\"']?[\w.\-]+[\"']?\s*(?:=|:)\s*\S")
TOKEN_TAIL = {"any": re.compile(r"[A-Za-z0-9]+"), "JWT": re.compile(r"[A-Za-z0-9_\-.+/=]+")}
URL_USERINFO = re.compile(r"(?<=://)[^\s:/@\"'<>]*:([^\s@/\"'<>]+)@(?=[\w\[])")
LEADING_B64 = re.compile(r"^\s*[\"']?([\w.\-]*(?i:secret|pass|pwd|token|key)[\w.\-]*)[\"']?\s*[=:]\s*[\"']?"
                         r"([+/][A-Za-z0-9+/=]{15,})[\"']?\s*$")
TYPES = sorted(set(PLUGIN_TYPES.values()) | {"GOOGLE_API_KEY", "PRIVATE_KEY", "AWS_SECRET_KEY", "PASSWORD"})


@functools.lru_cache(maxsize=1)
def _plugins() -> list[tuple[str, Any, list[re.Pattern]]]:
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    out: list[tuple[str, Any, list[re.Pattern]]] = []
    mapping: dict[str, Any] = get_mapping_from_secret_type_to_class()
    for cls in mapping.values():
        if cls.__name__ in SKIP:
            continue
        plugin = cls()
        out.append((PLUGIN_TYPES.get(cls.__name__, "SECRET"), plugin, list(getattr(plugin, "denylist", []))))
    return out


@functools.lru_cache(maxsize=1)
def _gate() -> re.Pattern:
    """A cheap superset: a line can hold a secret only if it holds one of these."""
    return re.compile(r"AKIA|ASIA|ABIA|ACCA|A3T|gh[pousr]_|gl[a-z]+-|GR1348941|xox|hooks\.slack|_live_|eyJ|://"
                      r"|AIza|BEGIN|PuTTY|AC[a-z0-9]{32}|SK[a-z0-9]{32}|SG\.|npm_|_authToken|pypi-|sk-|T3BlbkFJ"
                      r"|[MNO][\w-]{23,25}\.|\d{8,10}:|-us\d|sq0csp|AccountKey|AKC|AP[\dA-F]|(?i:aws|cloudant|ibm"
                      r"|softlayer|\bsl[_-]|\bcos[_-]|pass|pwd|secret|token|api_?key|auth|credential)")


def _value_groups(m: re.Match) -> tuple[int, int]:
    """The secret inside a match: its first group of 8+ characters (some plugins capture the
    value, others only a prefix such as `ghp`), else the match without delimiters."""
    for g in range(1, (m.re.groups or 0) + 1):
        if m.group(g) and len(m.group(g)) >= 8:
            return m.span(g)
    s, e = m.span()
    text = m.group()
    lead = len(text) - len(text.lstrip("\t \"'=:\n"))
    trail = len(text) - len(text.rstrip("\t \"'\n"))
    return s + lead, e - trail


def _keyword_values(line: str) -> list[tuple[str, str]]:
    """(type, value) pairs detect-secrets' KeywordDetector finds on a line, quoted assignments
    in any file, unquoted ones where the line reads like config (`key = value`, `KEY=value`)."""
    from detect_secrets.filters import heuristic as h
    kd = _keyword_detector()
    # quoted values anywhere; unquoted ones only on a config-like line that is no indirect
    # reference (`password = os.environ[...]`, `get_secret()`)
    names = ["x.txt"] + (["x.yaml"] if CONFIG_LINE.match(line) and not h.is_indirect_reference(line) else [])
    found = []
    for name in names:
        for s in kd.analyze_line(filename=name, line=line, line_number=1):
            v = s.secret_value
            if not v or h.is_templated_secret(v) or h.is_prefixed_with_dollar_sign(v) or \
                    h.is_sequential_string(v) or h.is_likely_id_string(v, line, kd) or \
                    h.is_not_alphanumeric_string(v) or v.startswith(("<", "{", "%")):
                continue
            key = line[:max(0, line.find(v))].lower()
            kind = "AWS_SECRET_KEY" if "aws" in key else "PASSWORD" if re.search(r"pass|pwd", key) else "SECRET"
            found.append((kind, v))
    # detect-secrets' unquoted-value pattern skips a value that starts with "/" or "+" (base64
    # characters, common in AWS secret keys): take the whole token after the key
    m = LEADING_B64.match(line)
    if m and not found and not h.is_indirect_reference(line):
        key = m.group(1).lower()
        found.append(("AWS_SECRET_KEY" if "aws" in key else "PASSWORD" if re.search(r"pass|pwd", key) else "SECRET",
                      m.group(2)))
    return found


@functools.lru_cache(maxsize=1)
def _keyword_detector():
    from detect_secrets.plugins.keyword import KeywordDetector
    return KeywordDetector()


def find_secrets(text: str, score: float = 0.9) -> list[RecognizerResult]:  # noqa: C901  (one pass per secret format)
    """Secret spans in `text` (private keys whole; other secrets, the value only)."""
    out: list[RecognizerResult] = []
    for m in PEM.finditer(text) if "PRIVATE KEY" in text else ():
        out.append(RecognizerResult("PRIVATE_KEY", m.start(), m.end(), score))
    for m in PUTTY.finditer(text) if "PuTTY" in text else ():
        out.append(RecognizerResult("PRIVATE_KEY", m.start(), m.end(), score))
    # a private key inside a JSON string: "-----BEGIN PRIVATE KEY-----\nMII...\n-----END ..."
    if "PRIVATE KEY-----\\n" in text:
        for m in re.finditer(r"-----BEGIN ((?:[A-Z0-9]+ )*PRIVATE KEY)-----(?:\\n|[^\"\\])*?-----END \1-----", text):
            out.append(RecognizerResult("PRIVATE_KEY", m.start(), m.end(), score))
    gate = _gate()
    pos = 0
    for line in text.split("\n"):
        start, pos = pos, pos + len(line) + 1
        if len(line) < 8 or not gate.search(line):
            continue
        for kind, plugin, patterns in _plugins():
            for pat in patterns:
                for m in pat.finditer(line):
                    s, e = _value_groups(m)
                    if kind not in ("URL_PASSWORD", "SECRET"):
                        # a plugin's pattern may stop short of the token's end (Stripe's 24
                        # characters of a 99-character key; JWT's lazy signature): the token
                        # goes on to the end of its word
                        tail = TOKEN_TAIL["JWT" if kind == "JWT" else "any"].match(line, e)
                        e = tail.end() if tail else e
                    value = line[s:e]
                    if kind == "JWT" and not plugin.is_formally_valid(value):
                        continue
                    if kind == "AWS_ACCESS_KEY" and len(value) == 40:
                        kind_ = "AWS_SECRET_KEY"
                    else:
                        kind_ = kind
                    if e > s:
                        out.append(RecognizerResult(kind_, start + s, start + e, score))
        if "@" in line:   # passwords in URLs with characters the plugin's pattern leaves out ("#", "?")
            for m in URL_USERINFO.finditer(line):
                out.append(RecognizerResult("URL_PASSWORD", start + m.start(1), start + m.end(1), score))
        for m in GOOGLE_API_KEY.finditer(line):
            out.append(RecognizerResult("GOOGLE_API_KEY", start + m.start(), start + m.end(), score))
        if KEYWORD_GATE.search(line):
            for kind, v in _keyword_values(line):
                k = line.find(v)
                while k >= 0:
                    a, b = k, k + len(v)
                    while a > 0 and line[a - 1] in "+/":      # the plugin drops a leading "+" or "/"
                        a -= 1
                    out.append(RecognizerResult(kind, start + a, start + b, score - 0.1))
                    k = line.find(v, b)
    return out
