"""The GS1 Barcode Syntax Dictionary: every Application Identifier, its components and rules.

The table below follows GS1's Barcode Syntax Dictionary (Apache-2.0, GS1 AISBL; the release
embedded in the Barcode Syntax Engine 1.4.1). One line per AI or AI range:

    AIs  flags  components...  attributes...  # title

flags: ``*`` fixed length (no FNC1 needed after it), ``!`` identification key, ``?`` allowed as a
Digital Link query attribute, ``-`` none. A component is ``Type[,linter...]`` where Type is
N (digits), X (CSET 82), Y (CSET 39) or Z (CSET 64) with a length ``6`` or ``..20``; brackets
mark an optional component. Attributes: ``req=`` (one of the listed AIs or ``a+b`` groups must be
present; a trailing ``n`` is a wildcard digit), ``ex=`` (none of them may be present), ``dlpkey``
(a Digital Link primary key, with its ordered qualifier sequences).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

_TABLE = """
00 *!? N18,csum,gcppos2 dlpkey # SSCC
01 *!? N14,csum,gcppos2 ex=255,37 dlpkey=22,10,21|235 # GTIN
02 *? N14,csum,gcppos2 ex=01,03 req=37 # CONTENT
03 * N14,csum,gcppos2 ex=01,02,37 # MTO GTIN
10 ? X..20 req=01,02,03,8006,8026 # BATCH/LOT
11 *? N6,yymmd0 req=01,02,03,8006,8026 # PROD DATE
12 *? N6,yymmd0 req=8020 # DUE DATE
13 *? N6,yymmd0 req=01,02,03,8006,8026 # PACK DATE
15 *? N6,yymmd0 req=01,02,03,8006,8026 # BEST BEFORE or BEST BY
16 *? N6,yymmd0 req=01,02,03,8006,8026 # SELL BY
17 *? N6,yymmd0 req=01,02,03,255,8006,8026 # USE BY or EXPIRY
20 *? N2 req=01,02,8006,8026 # VARIANT
21 - X..20 req=01,03,8006 ex=235 # SERIAL
22 - X..20 req=01 # CPV
235 - X..28 req=01 # TPX
240 ? X..30 req=01,02,8006,8026 # ADDITIONAL ID
241 ? X..30 req=01,02,8006,8026 # CUST. PART No.
242 ? N..6 req=01,02,8006,8026 # MTO VARIANT
243 ? X..20 req=01 # PCN
250 ? X..30 req=01,8006 req=21 # SECONDARY SERIAL
251 ? X..30 req=01,8006 # REF. TO SOURCE
253 !? N13,csum,gcppos1 [X..17] dlpkey # GDTI
254 - X..20 req=414 # GLN EXTENSION COMPONENT
255 !? N13,csum,gcppos1 [N..12] dlpkey ex=01,02,415,8006,8020,8026 # GCN
30 ? N..8 req=01,02 # VAR. COUNT
3100-3105 *? N6 req=01,02 ex=310n # NET WEIGHT (kg)
3110-3115 *? N6 req=01,02 ex=311n # LENGTH (m)
3120-3125 *? N6 req=01,02 ex=312n # WIDTH (m)
3130-3135 *? N6 req=01,02 ex=313n # HEIGHT (m)
3140-3145 *? N6 req=01,02 ex=314n # AREA (m²)
3150-3155 *? N6 req=01,02 ex=315n # NET VOLUME (l)
3160-3165 *? N6 req=01,02 ex=316n # NET VOLUME (m³)
3200-3205 *? N6 req=01,02 ex=320n # NET WEIGHT (lb)
3210-3215 *? N6 req=01,02 ex=321n # LENGTH (in)
3220-3225 *? N6 req=01,02 ex=322n # LENGTH (ft)
3230-3235 *? N6 req=01,02 ex=323n # LENGTH (yd)
3240-3245 *? N6 req=01,02 ex=324n # WIDTH (in)
3250-3255 *? N6 req=01,02 ex=325n # WIDTH (ft)
3260-3265 *? N6 req=01,02 ex=326n # WIDTH (yd)
3270-3275 *? N6 req=01,02 ex=327n # HEIGHT (in)
3280-3285 *? N6 req=01,02 ex=328n # HEIGHT (ft)
3290-3295 *? N6 req=01,02 ex=329n # HEIGHT (yd)
3300-3305 *? N6 req=00,01 ex=330n # GROSS WEIGHT (kg)
3310-3315 *? N6 req=00,01 ex=331n # LENGTH (m), log
3320-3325 *? N6 req=00,01 ex=332n # WIDTH (m), log
3330-3335 *? N6 req=00,01 ex=333n # HEIGHT (m), log
3340-3345 *? N6 req=00,01 ex=334n # AREA (m²), log
3350-3355 *? N6 req=00,01 ex=335n # VOLUME (l), log
3360-3365 *? N6 req=00,01 ex=336n # VOLUME (m³), log
3370-3375 *? N6 req=01 ex=337n # KG PER m²
3400-3405 *? N6 req=00,01 ex=340n # GROSS WEIGHT (lb)
3410-3415 *? N6 req=00,01 ex=341n # LENGTH (in), log
3420-3425 *? N6 req=00,01 ex=342n # LENGTH (ft), log
3430-3435 *? N6 req=00,01 ex=343n # LENGTH (yd), log
3440-3445 *? N6 req=00,01 ex=344n # WIDTH (in), log
3450-3455 *? N6 req=00,01 ex=345n # WIDTH (ft), log
3460-3465 *? N6 req=00,01 ex=346n # WIDTH (yd), log
3470-3475 *? N6 req=00,01 ex=347n # HEIGHT (in), log
3480-3485 *? N6 req=00,01 ex=348n # HEIGHT (ft), log
3490-3495 *? N6 req=00,01 ex=349n # HEIGHT (yd), log
3500-3505 *? N6 req=01,02 ex=350n # AREA (in²)
3510-3515 *? N6 req=01,02 ex=351n # AREA (ft²)
3520-3525 *? N6 req=01,02 ex=352n # AREA (yd²)
3530-3535 *? N6 req=00,01 ex=353n # AREA (in²), log
3540-3545 *? N6 req=00,01 ex=354n # AREA (ft²), log
3550-3555 *? N6 req=00,01 ex=355n # AREA (yd²), log
3560-3565 *? N6 req=01,02 ex=356n # NET WEIGHT (t oz)
3570-3575 *? N6 req=01,02 ex=357n # NET VOLUME (oz)
3600-3605 *? N6 req=01,02 ex=360n # NET VOLUME (qt)
3610-3615 *? N6 req=01,02 ex=361n # NET VOLUME (gal.)
3620-3625 *? N6 req=00,01 ex=362n # VOLUME (qt), log
3630-3635 *? N6 req=00,01 ex=363n # VOLUME (gal.), log
3640-3645 *? N6 req=01,02 ex=364n # VOLUME (in³)
3650-3655 *? N6 req=01,02 ex=365n # VOLUME (ft³)
3660-3665 *? N6 req=01,02 ex=366n # VOLUME (yd³)
3670-3675 *? N6 req=00,01 ex=367n # VOLUME (in³), log
3680-3685 *? N6 req=00,01 ex=368n # VOLUME (ft³), log
3690-3695 *? N6 req=00,01 ex=369n # VOLUME (yd³), log
37 ? N..8 req=00 req=02,8026 # COUNT
3900-3909 ? N..15 req=255,8020 ex=390n,391n,394n,8111 # AMOUNT
3910-3919 ? N3,iso4217 N..15 req=8020 ex=391n # AMOUNT
3920-3929 ? N..15 req=01 req=30,31nn,32nn,35nn,36nn ex=392n,393n # PRICE
3930-3939 ? N3,iso4217 N..15 req=30,31nn,32nn,35nn,36nn ex=393n # PRICE
3940-3943 ? N4 req=255 ex=394n,8111 # PRCNT OFF
3950-3955 ? N6 req=30,31nn,32nn,35nn,36nn ex=392n,393n,395n,8005 # PRICE/UoM
400 ? X..30 # ORDER NUMBER
401 !? X..30,gcppos1 dlpkey # GINC
402 !? N17,csum,gcppos1 dlpkey # GSIN
403 ? X..30 req=00 # ROUTE
410 *? N13,csum,gcppos1 # SHIP TO LOC
411 *? N13,csum,gcppos1 # BILL TO
412 *? N13,csum,gcppos1 # PURCHASE FROM
413 *? N13,csum,gcppos1 # SHIP FOR LOC
414 *!? N13,csum,gcppos1 dlpkey=254|7040 # LOC No.
415 *? N13,csum,gcppos1 req=8020 dlpkey=8020 # PAY TO
416 *? N13,csum,gcppos1 # PROD/SERV LOC
417 *? N13,csum,gcppos1 dlpkey=7040 # PARTY
420 ? X..20 ex=421 # SHIP TO POST
421 ? N3,iso3166 X..9 ex=4307 # SHIP TO POST
422 ? N3,iso3166 req=01,02,8006,8026 ex=426 # ORIGIN
423 ? N3,iso3166 [N3],iso3166 [N3],iso3166 [N3],iso3166 [N3],iso3166 req=01,02 ex=426 # CTRY INIT.
424 ? N3,iso3166 req=01,02 ex=426 # COUNTRY - PROCESS
425 ? N3,iso3166 [N3],iso3166 [N3],iso3166 [N3],iso3166 [N3],iso3166 req=01,02 ex=426 # CTRY DISASS.
426 ? N3,iso3166 req=01,02 # COUNTRY - FULL PROCESS
427 ? X..3 req=01,02 req=422 # ORIGIN SUBDIVISION
4300 ? X..35,pcenc req=00 # SHIP TO COMP
4301 ? X..35,pcenc req=00 # SHIP TO NAME
4302 ? X..70,pcenc req=00 # SHIP TO ADD1
4303 ? X..70,pcenc req=4302 # SHIP TO ADD2
4304 ? X..70,pcenc req=00 # SHIP TO SUB
4305 ? X..70,pcenc req=00 # SHIP TO LOC
4306 ? X..70,pcenc req=00 # SHIP TO REG
4307 ? X2,iso3166alpha2 req=00 # SHIP TO COUNTRY
4308 ? X..30 req=00 # SHIP TO PHONE
4309 ? N10,latitude N10,longitude req=00 # SHIP TO GEO
4310 ? X..35,pcenc req=00 # RTN TO COMP
4311 ? X..35,pcenc req=00 # RTN TO NAME
4312 ? X..70,pcenc req=00 # RTN TO ADD1
4313 ? X..70,pcenc req=4312 # RTN TO ADD2
4314 ? X..70,pcenc req=00 # RTN TO SUB
4315 ? X..70,pcenc req=00 # RTN TO LOC
4316 ? X..70,pcenc req=00 # RTN TO REG
4317 ? X2,iso3166alpha2 req=00 # RTN TO COUNTRY
4318 ? X..20 req=00 # RTN TO POST
4319 ? X..30 req=00 # RTN TO PHONE
4320 ? X..35,pcenc req=00 # SRV DESCRIPTION
4321 ? N1,yesno req=00 # DANGEROUS GOODS
4322 ? N1,yesno req=00 # AUTH TO LEAVE
4323 ? N1,yesno req=00 # SIG REQUIRED
4324 ? N6,yymmd0 N4,hhmi req=00 # NOT BEF DEL DT
4325 ? N6,yymmd0 N4,hhmi req=00 # NOT AFT DEL DT
4326 ? N6,yymmdd req=00 # REL DATE
4330 ? N6 [X1],hyphen req=00 ex=4331 # MAX TEMP F.
4331 ? N6 [X1],hyphen req=00 ex=4330 # MAX TEMP C.
4332 ? N6 [X1],hyphen req=00 ex=4333 # MIN TEMP F.
4333 ? N6 [X1],hyphen req=00 ex=4332 # MIN TEMP C.
7001 ? N13 req=01,02,8006,8026 # NSN
7002 ? X..30 req=01,02 # MEAT CUT
7003 ? N6,yymmdd N4,hhmi req=01,02 # EXPIRY TIME
7004 ? N..4 req=01 req=10 # ACTIVE POTENCY
7005 ? X..12 req=01,02 # CATCH AREA
7006 ? N6,yymmdd req=01,02 # FIRST FREEZE DATE
7007 ? N6,yymmdd [N6],yymmdd req=01,02 # HARVEST DATE
7008 ? X..3 req=01,02 # AQUATIC SPECIES
7009 ? X..10 req=01,02 # FISHING GEAR TYPE
7010 ? X..2 req=01,02 # PROD METHOD
7011 ? N6,yymmdd [N4],hhmi req=01,02 # TEST BY DATE
7020 ? X..20 req=01,8006 req=416 # REFURB LOT
7021 ? X..20 req=01,8006 # FUNC STAT
7022 ? X..20 req=7021 # REV STAT
7023 ? X..30,gcppos1 # GIAI - ASSEMBLY
7030-7039 ? N3,iso3166999 X..27 req=01,02 # PROCESSOR # n
7040 - N1 X1 X1 X1,importeridx # UIC+EXT
7041 - X..4,packagetype req=00 # UFRGT UNIT TYPE
710-716 ? X..20 req=01 # NHRN
7230-7239 ? X2 X..28 req=01,8004 # CERT # n
7240 ? X..20 req=01,8006 # PROTOCOL
7241 ? N2,mediatype req=8017,8018 # AIDC MEDIA TYPE
7242 ? X..25 req=8017,8018 # VCN
7250 ? N8,yyyymmdd req=8018 ex=7251 # DOB
7251 ? N8,yyyymmdd N4,hhmi req=8018 ex=7250 # DOB TIME
7252 ? N1,iso5218 req=8018 # BIO SEX
7253 ? X..40,pcenc req=8017,8018 ex=7256,7259 # FAMILY NAME
7254 ? X..40,pcenc req=8017,8018 ex=7256,7259 # GIVEN NAME
7255 ? X..10 req=8017,8018 ex=7256,7259 # SUFFIX
7256 ? X..90,pcenc req=8017,8018 # FULL NAME
7257 ? X..70,pcenc req=8018 # PERSON ADDR
7258 ? X3,posinseqslash req=8018+7259 # BIRTH SEQUENCE
7259 ? X..40,pcenc req=8018 ex=7256 # BABY
8001 ? N4,nonzero N5,nonzero N3,nonzero N1,winding N1 req=01 # DIMENSIONS
8002 ? X..20 # CMT No.
8003 !? N1,zero N13,csum,gcppos1 [X..16] dlpkey # GRAI
8004 !? X..30,gcppos1 dlpkey=7040 # GIAI
8005 ? N6 req=01,02 # PRICE PER UNIT
8006 ? N14,csum,gcppos2 N4,pieceoftotal ex=01,37 dlpkey=22,10,21 # ITIP
8007 ? X..34,iban req=415 # IBAN
8008 ? N6,yymmdd N2,hh [N2],mi [N2],ss req=01,02 # PROD TIME
8009 ? X..50 req=00,01 # OPTSEN
8010 !? Y..30,gcppos1 dlpkey=8011 # CPID
8011 - N..12,nozeroprefix req=8010 # CPID SERIAL
8012 ? X..20 req=01,8006 # VERSION
8013 !? X..25,csumalpha,gcppos1 dlpkey # GMN
8014 - X..25,csumalpha,gcppos1,hasnondigit req=01 # MUDI
8017 !? N18,csum,gcppos1 ex=8018 dlpkey=8019 # GSRN - PROVIDER
8018 !? N18,csum,gcppos1 ex=8017 dlpkey=8019 # GSRN - RECIPIENT
8019 - N..10 req=8017,8018 # SRIN
8020 - X..25 req=415 # REF No.
8026 ? N14,csum,gcppos2 N4,pieceoftotal req=37 ex=02,8006 # ITIP CONTENT
8030 ? Z..90 req=00,01+21,253,255,8003,8004,8006+21,8010+8011,8017,8018 # DIGSIG
8110 ? X..70,couponcode # COUPON
8111 ? N4 req=255 # POINTS
8112 ? X..70,couponposoffer # COUPON POS OFFER
8200 - X..70 req=01 # PRODUCT URL
90 ? X..30 # INTERNAL
91-99 ? X..90 # INTERNAL
"""


@dataclass(frozen=True)
class Component:
    """One part of an AI's data field, e.g. the N3 country code of AI 421."""

    cset: str
    """N (digits), X (CSET 82), Y (CSET 39) or Z (CSET 64, base64url)."""

    min: int
    """Fewest characters."""

    max: int
    """Most characters."""

    optional: bool
    """True when the component may be left out at the end of the data."""

    linters: tuple[str, ...]
    """Names of the content checks run on this component (see linters.py)."""


@dataclass(frozen=True)
class AIRule:
    """Everything the dictionary says about one Application Identifier."""

    ai: str
    """The AI, e.g. "01"."""

    fixed: bool
    """Pre-defined length: no FNC1/GS separator needed after it."""

    key: bool
    """A GS1 identification key (GTIN, SSCC, GLN ...)."""

    dl_attribute: bool
    """Allowed as a Digital Link query attribute."""

    components: tuple[Component, ...]
    """The parts of the data field, in order."""

    requires: tuple[tuple[tuple[str, ...], ...], ...]
    """Each req= rule: alternatives, each a group of AI patterns that must all be present."""

    excludes: tuple[str, ...]
    """AI patterns that must not appear together with this AI."""

    dl_qualifiers: tuple[tuple[str, ...], ...] | None
    """None when not a Digital Link primary key; else its allowed qualifier sequences."""

    title: str
    """Short human-readable name, e.g. "BATCH/LOT"."""

    @property
    def min_length(self) -> int:
        """Shortest value the AI accepts."""
        return sum(c.min for c in self.components if not c.optional)

    @property
    def max_length(self) -> int:
        """Longest value the AI accepts."""
        return sum(c.max for c in self.components)


_COMPONENT = re.compile(r"^(\[)?([NXYZ])(\.\.)?(\d+)(\])?((?:,[a-z0-9]+)*)$")


def _component(spec: str) -> Component:
    match = _COMPONENT.match(spec)
    if match is None:  # pragma: no cover - the table above is fixed
        msg = f"bad component {spec!r} in the syntax table"
        raise ValueError(msg)
    optional, cset, variable, length, _, linters = match.groups()
    size = int(length)
    return Component(
        cset=cset,
        min=1 if variable else size,
        max=size,
        optional=bool(optional),
        linters=tuple(name for name in linters.split(",") if name),
    )


def _parse_table() -> dict[str, AIRule]:
    rules: dict[str, AIRule] = {}
    for line in _TABLE.strip().splitlines():
        body, _, title = line.partition(" # ")
        words = body.split()
        ais, flags, rest = words[0], words[1], words[2:]
        components: list[Component] = []
        requires: list[tuple[tuple[str, ...], ...]] = []
        excludes: list[str] = []
        dl_qualifiers: tuple[tuple[str, ...], ...] | None = None
        for word in rest:
            if word.startswith("req="):
                requires.append(tuple(tuple(g.split("+")) for g in word[4:].split(",")))
            elif word.startswith("ex="):
                excludes.extend(word[3:].split(","))
            elif word == "dlpkey":
                dl_qualifiers = ((),)
            elif word.startswith("dlpkey="):
                dl_qualifiers = tuple(tuple(alt.split(",")) for alt in word[7:].split("|"))
            else:
                components.append(_component(word))
        first, _, last = ais.partition("-")
        width = len(first)
        for number in range(int(first), int(last or first) + 1):
            ai = str(number).zfill(width)
            rules[ai] = AIRule(
                ai=ai,
                fixed="*" in flags,
                key="!" in flags,
                dl_attribute="?" in flags,
                components=tuple(components),
                requires=tuple(requires),
                excludes=tuple(excludes),
                dl_qualifiers=dl_qualifiers,
                title=title.strip(),
            )
    return rules


RULES: dict[str, AIRule] = _parse_table()
"""AI -> its rule, for every AI GS1's engine knows."""

# All AIs that start with the same two digits have the same length (a GS1 design rule).
_AI_LENGTH_BY_PREFIX: dict[str, int] = {ai[:2]: len(ai) for ai in RULES}


def rule_for_prefix(data: str) -> AIRule | None:
    """The rule of the AI that starts `data` (element-string form), or None if none does."""
    length = _AI_LENGTH_BY_PREFIX.get(data[:2])
    if length is None:
        return None
    return RULES.get(data[:length])


@functools.cache
def dl_key_sequences() -> frozenset[tuple[str, ...]]:
    """Every valid Digital Link path: a primary key then an ordered subset of a qualifier list."""
    sequences: set[tuple[str, ...]] = set()
    for rule in RULES.values():
        if rule.dl_qualifiers is None:
            continue
        for qualifiers in rule.dl_qualifiers:
            subsets: list[tuple[str, ...]] = [()]
            for qualifier in qualifiers:
                subsets += [(*s, qualifier) for s in subsets]
            sequences.update((rule.ai, *s) for s in subsets)
    return frozenset(sequences)
