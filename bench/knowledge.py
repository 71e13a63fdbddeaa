"""Synthetic knowledge: as many distinct, realistic entries as asked, deterministically.

Questions are built from a small support-desk vocabulary, so the retriever sees overlapping words
across entries (as in real knowledge bases) rather than unique tokens that make retrieval trivial.
"""

from __future__ import annotations

import json
import random
from typing import Any

VERBS = (
    "reset", "change", "cancel", "track", "update", "return", "renew", "delete", "export",
    "verify", "upgrade", "download", "share", "transfer", "recover", "pause", "resume", "report",
    "replace", "activate", "deactivate", "schedule", "confirm", "merge", "split", "print",
    "rename", "restore", "sync", "lock",
)  # fmt: skip
QUALIFIERS = (
    "monthly", "annual", "business", "family", "student", "premium", "basic", "shared",
    "international", "express", "digital", "printed", "old", "new", "second", "primary",
    "backup", "gift", "trial", "corporate", "mobile", "desktop", "weekend", "overnight",
    "recurring", "pending", "archived", "default", "secondary", "temporary",
)  # fmt: skip
NOUNS = (
    "password", "order", "invoice", "subscription", "parcel", "refund", "account", "address",
    "payment method", "delivery slot", "email address", "phone number", "gift card", "coupon",
    "wishlist", "basket", "receipt", "warranty", "loyalty points", "profile", "newsletter",
    "two-factor code", "api key", "team seat", "billing plan", "shipping label", "return label",
    "support ticket", "storage quota", "device", "licence", "voucher", "booking", "reservation",
    "membership", "payout", "tax form", "bank account", "credit note", "data export",
    "notification", "language setting", "time zone", "avatar", "display name", "calendar",
    "workspace", "project", "folder", "document", "invitation", "contract", "quote",
    "price alert", "order history", "login session", "security question", "recovery email",
    "delivery address", "pickup point",
)  # fmt: skip
PLACES = ("Settings", "Billing", "Orders", "Account", "Security", "Help centre", "Profile")


def entries(count: int, seed: int = 7) -> list[dict[str, Any]]:
    """`count` distinct entries (up to 54,000: every verb x qualifier x noun once)."""
    combinations = len(VERBS) * len(QUALIFIERS) * len(NOUNS)
    if count > combinations:
        raise ValueError(f"at most {combinations} distinct entries")
    rng = random.Random(seed)
    picked = rng.sample(range(combinations), count)
    result = []
    for index in picked:
        verb = VERBS[index % len(VERBS)]
        qualifier = QUALIFIERS[(index // len(VERBS)) % len(QUALIFIERS)]
        noun = NOUNS[index // (len(VERBS) * len(QUALIFIERS))]
        place = PLACES[index % len(PLACES)]
        result.append(
            {
                "question": f"How do I {verb} my {qualifier} {noun}?",
                "answer": f"To {verb} your {qualifier} {noun}, open {place}, choose "
                f"'{noun.capitalize()}', then select '{verb.capitalize()}' and confirm.",
                "examples": [f"{verb} {qualifier} {noun}", f"can I {verb} the {noun}"],
            }
        )
    return result


def questions(from_entries: list[dict[str, Any]], count: int) -> list[str]:
    """User questions that paraphrase some of the entries (so replies come from knowledge)."""
    return [
        f"hi, how can I {entry['examples'][0]} please?"
        for entry in from_entries[: max(1, min(count, len(from_entries)))]
    ]


def message_bodies(from_entries: list[dict[str, Any]], count: int) -> list[str]:
    """One JSON body a line, ready for bench/scripts/post_message.lua."""
    return [json.dumps({"content": question}) for question in questions(from_entries, count)]
