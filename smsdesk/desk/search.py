"""The inbox search box: ticket refs, phone numbers, contact names and message text.

`search(tickets, query)` narrows a Ticket queryset; the caller still filters it
(status, assignee, keyset) and orders it, latest activity first.

What a query matches:

- `#K7Q2ZD` (a ref with `#`, any case): that ticket only. Without the `#`
  (`k7q2zd`) the same, if such a ticket exists; if not, the query is read as
  words below, as a six-letter word like "charge" is also shaped like a ref.
  A ref hit is looked up among all tickets: in a view that filters by
  status, a ticket of the other status shows as no match, not as text hits.
- A phone number in any format, when the whole query is digits and phone
  punctuation (`+ ( ) . / -`, spaces) with at least 3 digits: contacts whose
  number contains those digits. `+44 7700 900123` and `0044 7700…` match
  numbers starting `+447700900123` (so `+44 7700` finds every number in
  that range). With SMSDESK_DEFAULT_REGION set, `07700 900123` (or its
  start, `07700 9`) is read as a national number of that region, so as
  `+44 7700 9…`; otherwise, or when phonenumbers finds no such number, it
  drops its leading 0 and the rest matches anywhere in a number, as
  `(555) 010-9999` or a tail like `900123` do. Digits typed without
  punctuation also match message text (order numbers, codes).
- Anything else is words, or "quoted phrases": every one must occur in the
  ticket, case-insensitively and anywhere inside a word (`refun` finds
  "refund"), but not necessarily in the same place: in the contact's name,
  in the contact's number or sender id (`PayPal`), or in any of the ticket's
  messages, old or new, that people wrote: customer texts, agents' replies
  and internal notes. A word of digits also matches phone numbers. The
  first MAX_TERMS words count.
- The desk's automatic texts (the confirmation, the answers to STOP, START
  and HELP) are left out: they say the same in every ticket, so their words
  ("support", "ticket") would find them all. The ref a confirmation gives
  is found as a ref, above.
- A query needs one term with three letters or digits in a row: the
  trigram indexes cannot look up anything shorter. Shorter words narrow the
  tickets found by the others; a query of short words only matches nothing
  (too_short() tells, so that the inbox can say why).
- Accents must match (`Lea` does not find "Léa"). On SQLite, case folding
  is Unicode-wide for uncommon words but ASCII-only for very common ones
  (those go through SQLite's LIKE; see below): `ÉCOLE` then misses "école".

How it stays fast at 100k tickets / 1M messages (docs/performance.md):
PostgreSQL has pg_trgm GIN indexes on UPPER(body), UPPER(name) and
UPPER(phone), the very expressions of Django's icontains; SQLite has FTS5
trigram tables (desk_message_fts, desk_contact_fts) kept in step by
triggers (migrations 0004 and 0010). Both hold only the messages people
wrote (written()), which also spares the worker: a confirmation's row is
written three times on its way out, and PostgreSQL adds its words to the
index each time. An index finds the messages containing a word, but a
common word is in hundreds of thousands of them, and gathering those
only to keep the 25 most recent tickets is slow. Walking the tickets in
inbox order and checking each one's messages is fast for a common word
(the page fills within a few dozen tickets) and slow for a rare one (it
walks them all). So search() first asks the index, in one query, for up
to RARE + 1 tickets (by message) and contacts per term, and returns a
queryset built on what it learned: a rare term becomes its lists of ticket
and contact ids, a common one a check on each walked ticket. That is one
query inside search(), and the caller's one after it.

A term the index found common is remembered (COMMON) and walked from then
on without asking the index again: that answer only changes as texts are
deleted, and a walk finds what the index would, so a stale entry costs
time, never a result. It matters on PostgreSQL, where the index gathers
every match of a word before the LIMIT applies ("refund" at 1M messages:
~20 ms, most of the search), and the inbox runs a search again for each
live refresh of its results.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.db.models.expressions import RawSQL

from smsdesk.lib.phone import InvalidNumber, normalise_sender

from .models import REF_ALPHABET, REF_LENGTH, Contact, Message, Ticket

# A term the index finds in at most this many messages, and this many
# contacts, is matched by the ids found; a commoner one is checked on each
# walked ticket. Near this count both ways cost about the same (see the
# "near threshold" search in bench/inbox.py).
RARE = 2000
MAX_LENGTH = 200  # characters of a query; the rest is ignored
MAX_TERMS = 8  # words after these are ignored: each adds two lookups to the probe

# How many rows the index found for each term it found common (more than
# RARE), per database; at most COMMON_SIZE terms, then it starts afresh.
COMMON: dict[tuple[str, Term], int] = {}
COMMON_SIZE = 1000

REF_QUERY = re.compile(rf"(#?)([{REF_ALPHABET}]{{{REF_LENGTH}}})", re.IGNORECASE)
PHONE_QUERY = re.compile(r"\+?[0-9 ()./-]+")
WORDS = re.compile(r'"([^"]*)"|(\S+)')
# Both indexes need three characters; pg_trgm takes only letters and digits.
INDEXABLE = re.compile(r"[^\W_]{3}")


@dataclass(frozen=True)
class Term:
    """One thing the ticket must contain somewhere."""

    body: str  # looked for in message text ("" for none)
    name: str  # in the contact's name ("" for none)
    phones: tuple[str, ...]  # in the contact's number or sender id

    @property
    def contact(self) -> list[tuple[str, str]]:
        """The contact fields to look in, and for what."""
        return [("name", self.name)] * bool(self.name) + [("phone", p) for p in self.phones]

    @property
    def indexed(self) -> bool:
        needles = [self.body, self.name, *self.phones]
        return all(INDEXABLE.search(needle) for needle in needles if needle)


def search(tickets: QuerySet[Ticket], query: str) -> QuerySet[Ticket]:
    """`tickets` narrowed to those matching `query` (see the module docstring); unordered.

    Runs at most one query (none for an empty query, a `#ref` or common
    words only); the queryset it returns is evaluated by the caller as usual.
    """
    query = " ".join(query.split())[:MAX_LENGTH]
    if not query:
        return tickets
    ref = REF_QUERY.fullmatch(query)
    if ref and ref[1]:
        return tickets.filter(ref=ref[2].upper())
    found = terms(query)
    if not any(term.indexed for term in found):
        return tickets.none()
    hits = Probe(tickets.db, ref[2].upper() if ref else None, found).run()
    if hits.ref:
        return tickets.filter(ref=hits.ref)
    index = index_for(tickets.db)
    for term in sorted(found, key=hits.order):
        rare = hits.rare.get(term)
        if rare is None:
            tickets = tickets.filter(on_each_ticket(term))
        elif rare.size:
            tickets = tickets.filter(index.matches(rare))
        else:
            return tickets.none()  # every term must match: this one matches nothing
    return tickets


def too_short(query: str) -> bool:
    """Whether search() matches nothing because no term has 3 letters or digits in a row.

    For the inbox to say "type at least 3 letters or digits" rather than "no match".
    """
    query = " ".join(query.split())[:MAX_LENGTH]
    if not query or REF_QUERY.fullmatch(query):
        return False
    return not any(term.indexed for term in terms(query))


def terms(query: str) -> list[Term]:
    if is_phone_number(query):
        return [term_for(query)]
    words = [phrase or word for phrase, word in WORDS.findall(query)]
    unique = dict.fromkeys(term_for(word.strip()) for word in words if word.strip())
    return list(unique)[:MAX_TERMS]


def term_for(text: str) -> Term:
    if not is_phone_number(text):
        return Term(text, text, (text,))
    needle = phone_needle(text)
    if text.isdigit():
        # Bare digits: a number's tail, or an order number in a text.
        return Term(text, "", tuple(dict.fromkeys([text, needle])))
    return Term("", "", (needle,))


def is_phone_number(text: str) -> bool:
    return bool(PHONE_QUERY.fullmatch(text)) and sum(c.isdigit() for c in text) >= 3


def phone_needle(text: str) -> str:
    """What a stored number (E.164) contains when it is the number typed.

    "+" only ever starts a stored number, so a needle with "+" matches its start.
    """
    digits = re.sub(r"[^0-9]", "", text)
    if text.startswith("+"):
        return "+" + digits
    if text.startswith("00"):
        return "+" + digits[2:]
    if text.startswith("0"):
        region = settings.SMSDESK_DEFAULT_REGION
        if region:
            try:
                return normalise_sender(text, region)
            except InvalidNumber:
                pass  # part of a number: its digits, as below
        # A national trunk prefix: the stored number has the country code there instead.
        return digits.lstrip("0") or digits
    return digits


def on_each_ticket(term: Term) -> Q:
    """The term as a check on one ticket at a time, for walking tickets in inbox order."""
    match = Q()
    for field, needle in term.contact:
        match |= Q(**{f"contact__{field}__icontains": needle})
    if term.body:
        messages = written().filter(ticket=OuterRef("pk"), body__icontains=term.body)
        match |= Q(Exists(messages))
    return match


def written() -> QuerySet[Message]:
    """The messages search looks in: all but the desk's automatic texts.

    Exactly the rows the indexes hold (a partial index on PostgreSQL, the
    triggers' condition on SQLite); a walk must not find more.
    """
    return Message.objects.filter(purpose="")


@dataclass(frozen=True)
class Rare:
    """Everything a rare term matches, as the index found it: messages (or
    their tickets, as the index tells) and contacts."""

    messages: tuple[int, ...]
    contacts: tuple[int, ...]

    @property
    def size(self) -> int:
        return len(self.messages) + len(self.contacts)


@dataclass
class Hits:
    ref: str | None  # the ref asked for, if that ticket exists
    rare: dict[Term, Rare]  # the indexed terms with at most RARE messages and contacts each

    def order(self, term: Term) -> int:
        """Rare terms first, rarest first, as they narrow the most; then the rest."""
        rare = self.rare.get(term)
        return rare.size if rare is not None else RARE * 2 + (0 if term.indexed else 1)


class Index:
    """PostgreSQL: Django's icontains, `UPPER(col) LIKE UPPER('%…%')`, which
    the trigram indexes of migration 0004 serve. The probe reads the
    tickets of the messages found, so `Rare.messages` holds ticket ids."""

    def probe_messages(self, needle: str) -> QuerySet[Any] | RawSQL:
        return written().filter(body__icontains=needle).values_list("ticket_id")

    def probe_contacts(self, needles: list[tuple[str, str]]) -> QuerySet[Any] | RawSQL:
        match = Q()
        for field, needle in needles:
            match |= Q(**{f"{field}__icontains": needle})
        return Contact.objects.filter(match).values_list("pk")

    def probe(self, rows: QuerySet[Any] | RawSQL, alias: str) -> tuple[str, list[Any]]:
        """SQL for up to RARE + 1 of these rows."""
        if isinstance(rows, RawSQL):
            return f"{rows.sql} LIMIT {RARE + 1}", list(rows.params)
        query = rows.order_by()[: RARE + 1].query
        sql, params = query.get_compiler(using=alias).as_sql()
        return sql, list(params)

    def matches(self, rare: Rare) -> Q:
        match = Q()
        if rare.messages:
            match |= Q(pk__in=self.ids(rare.messages))
        if rare.contacts:
            match |= Q(contact_id__in=self.ids(rare.contacts))
        return match

    def ids(self, ids: tuple[int, ...]) -> RawSQL:
        # One text parameter: a list of thousands costs Django more than the
        # query, and an array parameter psycopg quotes element by element
        # (for 1,500 ids 5 ms, more than the query took).
        return RawSQL(
            "SELECT unnest(string_to_array(%s, ',')::bigint[])", [",".join(map(str, ids))]
        )


class Fts5Index(Index):
    """SQLite: the FTS5 trigram tables of migration 0004. The probe reads the
    index alone, so `Rare.messages` holds message ids."""

    def probe_messages(self, needle: str) -> RawSQL:
        return fts5("desk_message_fts", [("body", needle)])

    def probe_contacts(self, needles: list[tuple[str, str]]) -> RawSQL:
        return fts5("desk_contact_fts", needles)

    def matches(self, rare: Rare) -> Q:
        match = Q()
        if rare.messages:
            tickets = Message.objects.filter(pk__in=self.ids(rare.messages)).values("ticket_id")
            match |= Q(pk__in=tickets.order_by())
        if rare.contacts:
            match |= Q(contact_id__in=self.ids(rare.contacts))
        return match

    def ids(self, ids: tuple[int, ...]) -> RawSQL:
        return RawSQL("SELECT value FROM json_each(%s)", [json.dumps(ids)])


def fts5(table: str, needles: Sequence[tuple[str, str]]) -> RawSQL:
    """Rows of an FTS5 trigram table with any (column, needle): `column : "needle"`
    is a substring match in that column."""
    phrases = " OR ".join(
        f'{column} : "' + needle.replace('"', '""') + '"' for column, needle in needles
    )
    return RawSQL(f"SELECT rowid FROM {table} WHERE {table} MATCH %s", [phrases])


def index_for(alias: str) -> Index:
    return Fts5Index() if connections[alias].vendor == "sqlite" else Index()


class Probe:
    """One query: does the ref exist, and what does the index find for each
    indexed term (up to RARE + 1 rows per term and kind, which tells common
    from rare)."""

    def __init__(self, alias: str, ref: str | None, found: list[Term]) -> None:
        self.alias = alias
        self.ref = ref
        # Terms known to be common are walked: nothing to ask the index.
        self.indexed = [
            term for term in found if term.indexed and COMMON.get((alias, term), 0) <= RARE
        ]
        self.index = index_for(alias)

    def run(self) -> Hits:
        parts = self.parts()
        if not parts:
            return Hits(None, {})
        rows: list[list[int]] = [[] for _ in parts]
        union = " UNION ALL ".join(
            f"SELECT {n}, p{n}.* FROM ({sql}) AS p{n}" for n, (sql, _) in enumerate(parts)
        )
        with connections[self.alias].cursor() as cursor:
            cursor.execute(union, [param for _, params in parts for param in params])
            for part, value in cursor.fetchall():
                rows[part].append(value)
        rows.reverse()  # popped in the order the parts were made
        ref = self.ref if self.ref and rows.pop() else None
        rare = {}
        for term in self.indexed:
            messages = rows.pop() if term.body else []
            contacts = rows.pop()
            if len(messages) <= RARE and len(contacts) <= RARE:
                rare[term] = Rare(tuple(sorted(set(messages))), tuple(sorted(set(contacts))))
            else:
                remember_common(self.alias, term, max(len(messages), len(contacts)))
        return Hits(ref, rare)

    def parts(self) -> list[tuple[str, list[Any]]]:
        parts = []
        if self.ref:
            ref = Ticket.objects.filter(ref=self.ref).values_list("pk")
            parts.append(self.index.probe(ref, self.alias))
        for term in self.indexed:
            if term.body:
                parts.append(self.index.probe(self.index.probe_messages(term.body), self.alias))
            parts.append(self.index.probe(self.index.probe_contacts(term.contact), self.alias))
        return parts


def remember_common(alias: str, term: Term, found: int) -> None:
    if len(COMMON) >= COMMON_SIZE:
        COMMON.clear()  # whole, not oldest first: one step, safe between threads
    COMMON[alias, term] = found


# SQLite: the FTS5 tables stay in step with desk_message and desk_contact
# through these triggers (as migrations 0004 and 0010 create them). SQLite
# drops a table's triggers with the table, and Django rebuilds a table for
# many AddField and AlterField migrations, so after every migrate they are
# put back (DeskConfig.ready connects restore_sqlite_triggers to
# post_migrate).
SQLITE_TRIGGERS: dict[str, dict[str, str]] = {
    "desk_message_fts": {
        "desk_message_fts_insert": "AFTER INSERT ON desk_message WHEN new.purpose = '' BEGIN"
        " INSERT INTO desk_message_fts (rowid, body) VALUES (new.id, new.body);"
        " END",
        "desk_message_fts_delete": "AFTER DELETE ON desk_message WHEN old.purpose = '' BEGIN"
        " INSERT INTO desk_message_fts (desk_message_fts, rowid, body)"
        " VALUES ('delete', old.id, old.body);"
        " END",
        "desk_message_fts_update": "AFTER UPDATE OF body, purpose ON desk_message BEGIN"
        " INSERT INTO desk_message_fts (desk_message_fts, rowid, body)"
        " SELECT 'delete', old.id, old.body WHERE old.purpose = '';"
        " INSERT INTO desk_message_fts (rowid, body)"
        " SELECT new.id, new.body WHERE new.purpose = '';"
        " END",
    },
    "desk_contact_fts": {
        "desk_contact_fts_insert": "AFTER INSERT ON desk_contact BEGIN"
        " INSERT INTO desk_contact_fts (rowid, name, phone) VALUES (new.id, new.name, new.phone);"
        " END",
        "desk_contact_fts_delete": "AFTER DELETE ON desk_contact BEGIN"
        " INSERT INTO desk_contact_fts (desk_contact_fts, rowid, name, phone)"
        " VALUES ('delete', old.id, old.name, old.phone);"
        " END",
        "desk_contact_fts_update": "AFTER UPDATE OF name, phone ON desk_contact BEGIN"
        " INSERT INTO desk_contact_fts (desk_contact_fts, rowid, name, phone)"
        " VALUES ('delete', old.id, old.name, old.phone);"
        " INSERT INTO desk_contact_fts (rowid, name, phone) VALUES (new.id, new.name, new.phone);"
        " END",
    },
}
# How each index is filled afresh from its table: the message index holds
# only the rows its triggers take in.
SQLITE_REFILL: dict[str, list[str]] = {
    "desk_message_fts": [
        "INSERT INTO desk_message_fts (desk_message_fts) VALUES ('delete-all')",
        "INSERT INTO desk_message_fts (rowid, body)"
        " SELECT id, body FROM desk_message WHERE purpose = ''",
    ],
    "desk_contact_fts": ["INSERT INTO desk_contact_fts (desk_contact_fts) VALUES ('rebuild')"],
}


def restore_sqlite_triggers(using: str = DEFAULT_DB_ALIAS, **kwargs: object) -> list[str]:
    """Put back the FTS triggers a table rebuild dropped; a post_migrate receiver.

    An index that lost a trigger may have missed writes meanwhile (a data
    migration after the rebuild), so it is rebuilt from its table. Returns
    the names of the triggers put back.
    """
    connection = connections[using]
    if connection.vendor != "sqlite":
        return []
    restored = []
    with transaction.atomic(using=using), connection.cursor() as cursor:
        cursor.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'trigger')")
        present = {name for (name,) in cursor.fetchall()}
        for table, triggers in SQLITE_TRIGGERS.items():
            missing = [name for name in triggers if name not in present]
            if table not in present or not missing:
                continue  # not migrated this far (or migrated back), or intact
            for name in missing:
                cursor.execute(f"CREATE TRIGGER {name} {triggers[name]}")
            for sql in SQLITE_REFILL[table]:
                cursor.execute(sql)
            restored += missing
    return restored
