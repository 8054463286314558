"""Street addresses as a presidio recognizer: presidio ships none (it finds only the city).

A match is a whole postal address span — house number, street name and street type, unit, and
the city/postcode lines that follow — so redaction never leaves the street behind. Street forms:
number-first with a street-type word after the name (US/UK/CA/AU; types from USPS Publication 28,
appendix C1, and common abbreviations), a street-type suffix glued to the name then the number
(German, Dutch, Nordic: "Zirmeplatz 17", "Kerkstraat 9"), a type word before the name (French,
Spanish, Italian, Portuguese: "46, avenue Leroy", "Via Roma, 12") and PO boxes / military mail.
Postcodes (US ZIP(+4), UK, Canadian, 4–5 digit European with city) extend a street match; a UK
or Canadian postcode alone is matched too (it names a handful of households).
"""
from __future__ import annotations

from typing import Any

import regex
from presidio_analyzer import EntityRecognizer, RecognizerResult

ENTITY = "ADDRESS"
# USPS Publication 28 C1 street suffixes (full forms) plus their common abbreviations.
EN_TYPES = """alley aly annex arcade avenue ave av bayou beach bend bluff bluffs bottom boulevard blvd branch
bridge brg brook brooks burg burgs bypass camp canyon cape causeway center ctr centers circle cir circles cliff
cliffs club common commons corner corners course court ct courts cove coves creek crk crescent cres crest
crossing xing crossroad curve dale dam divide drive dr drives estate estates expressway expy extension ext
extensions falls ferry field fields flat flats ford fords forest forge forges fork forks fort freeway fwy
garden gardens gdns gateway glen glens green greens grove grv groves harbor harbour harbors haven heights hts
highway hwy hill hills hollow inlet island islands isle junction jct junctions key keys knoll knolls lake
lakes land landing lane ln light lights loaf lock locks lodge loop mall manor manors meadow meadows mews mill
mills mission motorway mount mountain mountains mtn neck orchard oval overpass park parks parkway pkwy parkways
pass passage path pike pine pines place pl plain plains plaza plz point pt points port ports prairie radial
ramp ranch rapid rapids rest ridge ridges river road rd roads route rte row rue run shoal shoals shore shores
skyway spring springs spur spurs square sq squares station sta stravenue stream street st streets summit
terrace ter throughway trace track trafficway trail trl trailer tunnel turnpike underpass union unions valley
valleys viaduct view views village villages ville vista walk walks wall way ways well wells close copse
strand parade pde esplanade rise grange chase gate wharf quay circus cross
access arcade boardwalk brace broadway circuit concourse dell end entrance fairway front frontage glade link
lookout meander nook outlook pathway promenade quays rotary round serviceway strip subway tollway trunkway
riverway turn vale walkway wynd footway ring laneway quadrangle quadrant ramble reach reserve retreat ridgeway
riviera steps tarn thoroughfare top tor yard arterial cutting deviation easement elbow follow gap highroad
interchange line pocket shunt fall alleyway amble anchorage approach artery basin block brae break brow byway
centre centreway circlet colonnade courtyard crossway cruiseway driveway edge firetrail foreshore formation
gates ground gully intersection lees little lower mew parklands part plateau quad range ride roadside
roadway ronde rosebowl siding slope sound stairs towers triangle upper villas wade corso piazza""".split()
# glued suffixes: strong ones need only a house number, weak ones (also English word endings,
# "String 3", "Spring 2020") need a postcode after the number too
GLUED_STRONG = """straße strasse str. gasse allee platz weg chaussee straat laan plein gracht dreef kade singel
gatan vägen väg gränd vej gade veien vegen gata katu kuja baan steeg boulevard""".split()
GLUED_WEAK = "ring hof berg markt damm ufer pfad pad steig dijk tie polku torget way".split()
ROMANCE_TYPES = """rue avenue av. boulevard bd chemin impasse allée place quai route cours passage calle c/
avenida avda. paseo plaza camino carrera ronda travesía travesia cuesta vial glorieta pasaje rambla via viale
piazza piazzale piazzetta corso largo vicolo strada stretto contrada borgo incrocio rotonda canale
acceso bajada callejón cañada carretera pasadizo urbanización rua travessa alameda praça
rodovia estrada bulevardul calea aleea jalan ulica ul. al. aleja""".split()

W = r"\p{Lu}[\p{L}\p{M}'’.\-]*"                # a capitalised word (Oda-Preiß-Straße, O'Neil, St.)
ORD = r"\d{1,3}(?:st|nd|rd|th)"
WN = r"(?:St\.|Mt\.|Ft\.|\p{Lu}[\p{L}\p{M}'’\-]*)"   # a street-name word: no sentence-ending dot
NUM = r"\d{1,6}[A-Za-z]?(?:[ ]?[-/][ ]?\d{1,5}[A-Za-z]?)?"
UNIT = r"(?:,?[ ](?i:apt|apartment|suite|ste|unit|flat|floor|fl|room|rm|bldg|building|appartamento|piso|puerta" \
       r"|escalera|étage|bte)\.?[ ]?[#nº°]?[ ]?\w{1,6}\b|[ ]\#[ ]?\w{1,6}\b)?"
SEP = r"(?:[ ]?,[ ]?|[ ]?\n[ ]?|[ ]/[ ]|[ ])"
CITY = rf"{W}(?:[ -](?:{W}|d[eiu]|la|le|sur|am|an|der|bei|upon|on))*"
POSTCODE = (r"(?:\d{5}(?:-\d{4})?|[A-Z]\d[A-Z][ ]?\d[A-Z]\d|[A-Z]{1,2}\d[A-Z\d]?[ ]?\d[A-Z]{2}"
            r"|(?:[A-Z]{1,2}-)?\d{4}(?:[ ]?[A-Z]{2})?|\d{5}-\d{3}|\d{2}-\d{3}|\d{3}[ ]\d{2})")
STATE = r"(?:[A-Z]{2,3}|\p{Lu}\p{Ll}+(?:[ ]\p{Lu}\p{Ll}+)?)"


def _alt(words: list[str]) -> str:
    return "|".join(regex.escape(w) for w in sorted(words, key=len, reverse=True))


EN_STREET = (rf"(?:(?i:flat|apartment|apt\.?|unit|suite|studio|room)[ ]\w{{1,5}},?\s{{1,2}}(?:{NUM},?[ ])?|{NUM},?[ ])"
             rf"(?:(?:[NSEW]|NE|NW|SE|SW|North|South|East|West)\.?[ ])?(?:{WN}|{ORD})"
             rf"(?:[ ](?:{WN}|{ORD}|of|the|de|la|du|del)){{0,3}}?[ ](?i:{_alt(EN_TYPES)})\b\.?"
             rf"(?:[ ](?:N|S|E|W|NE|NW|SE|SW)\b\.?)?{UNIT}")
GLUED = (rf"(?:(?:{W}|Am|An|Im|Auf|Zum|Zur|Op|De|Het)[ ]){{0,2}}(?=\p{{Lu}})[\p{{L}}\p{{M}}'’\-]*?"
         rf"(?:(?i:{_alt(GLUED_STRONG)})[ ]{NUM}|(?i:{_alt(GLUED_WEAK)})[ ]{NUM}(?={SEP}{POSTCODE}\b))\.?{UNIT}")
ROMANCE_NAME = (r"[ ](?:(?:de|del|de la|des|du|di|da|do|dos|das|della|delle|dei|degli|dello|d'|l')[ ]?)*"
                rf"{W}(?:[ ](?:{W}|de|del|di|da|do|la|le|des|du|y)){{0,4}}")
ROMANCE_NO = r"(?:,?[ ](?:n[º°.]?[ ]?)?\d{1,4}[a-zA-Z]?\b)"
# number first ("46, avenue Leroy") or a capitalised type word and a number after ("Via Roma, 12")
ROMANCE = (rf"(?:\d{{1,4}}(?:[ ]?(?:bis|ter))?,?[ ](?i:{_alt(ROMANCE_TYPES)}){ROMANCE_NAME}{ROMANCE_NO}?"
           rf"|(?:{_alt([t.capitalize() for t in ROMANCE_TYPES])}){ROMANCE_NAME}{ROMANCE_NO}"
           rf"|(?i:{_alt(ROMANCE_TYPES)}){ROMANCE_NAME}(?={{tail}}))")
PO_BOX = (r"(?:(?i:p\.?[ ]?o\.?[ ]?box|post[ ]office[ ]box|postfach|apartado(?:[ ]de[ ]correos)?|casella[ ]postale)"
          r"[ ]\d{1,6}|PSC[ ]\d{4},?[ ]Box[ ]\d{4}|Unit[ ]\d{4}[ ]Box[ ]\d{4}|(?:USNS|USNV|USS|USCGC)[ ]" + W + r")")
MILITARY_TAIL = r"(?:[ ]?,?[ ]?\n?[ ]?(?:APO|FPO|DPO)[ ](?:AA|AE|AP)[ ]\d{5})"
# the city / state / postcode lines after a street (at most two city lines before the postcode)
TAIL = (rf"(?:{MILITARY_TAIL}"
        rf"|{SEP}(?:{CITY},?{SEP}){{0,2}}(?:{STATE},?[ ])?{POSTCODE}\b(?:,?[ ]{CITY})?(?:[ ]\([A-Z]{{2}}\))?"
        rf"|{SEP}{POSTCODE}\b,?{SEP}{CITY}(?:[ ]\([A-Z]{{2}}\))?(?:{SEP}[A-Z]{{2}}\b)?)")
ROMANCE = ROMANCE.replace("{tail}", TAIL)
STREET = rf"(?<![\w.@/\-])(?:{EN_STREET}|{GLUED}|{ROMANCE}|{PO_BOX}){UNIT}"
ADDRESS_RE = regex.compile(rf"{STREET}(?:{TAIL})?(?![\w@])", regex.V0)
# forms real text writes that the street pattern above does not (issue 27):
# - prose: "number 12 on Rue de Rivoli" (the house number, "on", the street)
# - a number after an English street with its type: "Dennis Expressway 62"
# - ordinal streets with no type: "525 S 2nd", "1583 West 113th" (with a direction, or after
#   an address cue: "at 47 5th")
# - rural routes and highway contracts: "RR 2 Box 152", "Rural Route 3, Box 45", "R.R. #1", "HC 65 Box 12"
# - Indian house numbers: "H.No. 12-3-456, Road No. 4, Banjara Hills", "Flat No. 815, Sama
#   Residency, Plot 38", "#12, 3rd Cross, 5th Main", "D-45, Sector 82, Noida 201302",
#   "10/16, Sengupta Ganj, Guntakal 850005" (6-digit PIN)
# - Polish (and similar) abbreviated types before the name: "ul. Bydgoska 241/4, 00-950 Warszawa"
IN_SEG = (r"(?:,[ ](?:\d{1,2}(?:st|nd|rd|th)[ ](?:Cross|Main|Block|Stage|Phase)(?:[ ]Road)?|(?:Plot|Sector|Road|Block"
          r"|Street|Lane)[ ](?:No\.?[ ]?)?\d{1,4}[A-Z]?|" + W + r"(?:[ ](?:" + W + r"|\d{1,4}))*"
          r")){1,4}(?:[ ]?[-–]?[ ]?\d{6}|[ ]\d{3}[ ]\d{3})?")
ROMANCE_LOWER = _alt([t for t in ROMANCE_TYPES if t.isalpha()])
EXTRA = (rf"(?<=(?i:number|no\.?|\#)[ ])\d{{1,5}}[A-Za-z]?[ ]on[ ](?:the[ ])?(?:{WN}|{ORD}|(?:{ROMANCE_LOWER})\b)"
         rf"(?:[ ](?:{WN}|{ORD}|de|la|du|des|del|di|of|the)){{0,5}}(?<![ ](?:de|la|du|des|del|di|of|the))"
         rf"|(?:\bRR|\bR\.R\.|Rural[ ]Route|\bHC|Highway[ ]Contract|Star[ ]Route)[ ]?\#?\d{{1,3}}"
         rf"(?:,?[ ](?:Box|Site)[ ]\d{{1,5}})?(?:,[ ]Comp[ ]\d{{1,4}})?(?<=\d)"
         rf"(?:(?<=\#\d{{1,3}})|(?<=(?:Box|Site|Comp)[ ]\d{{1,5}})|(?<=Route[ ]\d{{1,3}}))"
         rf"|(?:(?i:h\.?[ ]?no\.?|house[ ]no\.?|flat[ ]no\.?|plot[ ]no\.?|door[ ]no\.?)[ ]?[\dA-Z][\w/\-]{{0,12}}"
         rf"|\#\d{{1,4}}(?:/\d{{1,4}})?|[A-Z]-\d{{1,4}}(?=,[ ]Sector)|\d{{1,4}}/\d{{1,4}}(?=,[ ]\p{{Lu}}))" + IN_SEG +
         rf"|(?<![\w.])(?:ul|al|pl|os|ulica|aleja)\.?[ ]\p{{Lu}}[\p{{L}}\p{{M}}.'’\-]*"
         rf"(?:[ ][\p{{Lu}}IVX][\p{{L}}\p{{M}}.'’\-]*){{0,3}}"
         rf"[ ]\d{{1,4}}[a-zA-Z]?(?:[ ]?/[ ]?\d{{1,4}}[a-zA-Z]?)?"
         rf"|\d{{1,5}}[ ](?:[NSEW]|North|South|East|West)\.?[ ]\d{{1,3}}(?:st|nd|rd|th)\b"
         rf"|(?<=(?:(?i:\bat|\bto|address:?|ship[ ]to)[ ]\"?|[,:][ ]?\"))\d{{1,5}}[ ]\d{{1,3}}(?:st|nd|rd|th)\b(?!-)"
         rf"|(?<![\w.])(?:{WN}[ ]){{1,3}}(?i:{_alt(EN_TYPES)})[ ](?!(?:19|20)\d\d\b)\d{{1,4}}[A-Za-z]?\b{UNIT}")
EXTRA_RE = regex.compile(rf"(?:{EXTRA})(?:{TAIL})?(?![\w@])", regex.V0)
POSTCODE_ALONE = regex.compile(r"(?<![\w\-])(?:[A-Z]{1,2}\d[A-Z\d]?[ ]\d[A-Z]{2}|[A-Z]\d[A-Z][ ]\d[A-Z]\d)(?![\w\-])")
# every address holds a digit or a PO-box word: documents without one skip the big pattern
GATE = regex.compile(r"\d")


class AddressRecognizer(EntityRecognizer):
    """Presidio recognizer for whole postal addresses (street + unit + city/postcode lines)."""

    def __init__(self, score: float = 0.7, postcode_score: float = 0.6):
        self.score, self.postcode_score = score, postcode_score
        super().__init__(supported_entities=[ENTITY], name="AddressRecognizer", supported_language="en")

    def load(self) -> None:
        pass

    def analyze(self, text: str, entities: list[str] | None = None,
                nlp_artifacts: Any = None) -> list[RecognizerResult]:
        out = [RecognizerResult(ENTITY, m.start(), m.end(), self.score) for m in self.spans(text)]
        covered = [(r.start, r.end) for r in out]
        for m in POSTCODE_ALONE.finditer(text):
            if not any(s <= m.start() < e for s, e in covered):
                out.append(RecognizerResult(ENTITY, m.start(), m.end(), self.postcode_score))
        return out

    @staticmethod
    def spans(text: str) -> list[Any]:
        """Street-address matches (none in a text without a digit)."""
        if not GATE.search(text):
            return []
        found = list(ADDRESS_RE.finditer(text, overlapped=False)) + list(EXTRA_RE.finditer(text))
        chosen: list[Any] = []
        for m in sorted(found, key=lambda m: m.start() - m.end()):      # longest first
            if all(m.end() <= c.start() or m.start() >= c.end() for c in chosen):
                chosen.append(m)
        return sorted(chosen, key=lambda m: m.start())
