"""Support tickets for the ticket-triage example: the 30 shipped ones, or as many as you like.

    python make_tickets.py > tickets.jsonl            # the 30 in tickets.jsonl
    python make_tickets.py 10000 > tickets-10k.jsonl  # for the item-level resume demo

Past 30, tickets repeat the hand-written ones with other customers and ids, so a large file
reads like real traffic. Each sample also carries the triage a person would give it
(``example_triage``), from which demo_replies.py writes the offline demo's replies.
"""

from __future__ import annotations

import json
import sys

CUSTOMERS = ["Acme GmbH", "Borealis Ltd", "Cobalt Inc", "Dunmore & Co", "Elm Street Bakery"]

# (subject, body, urgency, category, suggested response)
SAMPLES = [
    (
        "Cannot log in since this morning",
        "None of our 40 users can log in; SSO says 'invalid assertion'. We are blocked.",
        "critical",
        "outage",
        "We are investigating the SSO failure now and will update you within 30 minutes.",
    ),
    (
        "Charged twice for November",
        "Our card was charged twice for the November invoice. Please refund one payment.",
        "high",
        "billing",
        "Sorry about the double charge; we have started a refund of the second payment.",
    ),
    (
        "How do I add a teammate?",
        "Where in the settings do I invite a new user to our workspace?",
        "low",
        "how-to",
        "Go to Settings > Members > Invite and enter their email address.",
    ),
    (
        "Export to CSV please",
        "It would be great to export reports as CSV for our finance team.",
        "low",
        "feature-request",
        "Thanks, we have added your vote to the CSV export request.",
    ),
    (
        "API returns 500 on /v2/orders",
        "Since the last release every call to /v2/orders fails with HTTP 500; no orders.",
        "critical",
        "bug",
        "We can reproduce the 500 on /v2/orders and are rolling back the release.",
    ),
    (
        "Dashboard very slow",
        "The dashboard takes about 20 seconds to load since Monday.",
        "medium",
        "bug",
        "Thanks for reporting it; we are looking into the dashboard's load time.",
    ),
    (
        "Change billing email",
        "Please send invoices to accounts@example.com from now on.",
        "low",
        "billing",
        "Done: invoices now go to accounts@example.com.",
    ),
    (
        "Password reset email never arrives",
        "I requested a password reset three times and got no email.",
        "high",
        "account",
        "We have resent the reset link; please also check your spam folder.",
    ),
    (
        "Data from yesterday missing",
        "All records created yesterday afternoon are gone from the reports.",
        "critical",
        "bug",
        "We are checking yesterday's import jobs and will restore the missing records.",
    ),
    (
        "Dark mode",
        "Any plans for a dark mode? My eyes would thank you.",
        "low",
        "feature-request",
        "Dark mode is on our roadmap; we will let you know when it ships.",
    ),
    (
        "Invoice shows wrong VAT number",
        "Our VAT number on the invoice is from our old address.",
        "medium",
        "billing",
        "We have corrected your VAT number and reissued the invoice.",
    ),
    (
        "Two-factor codes rejected",
        "My authenticator codes are always rejected, so I cannot get in.",
        "high",
        "account",
        "Please check your phone's clock is set automatically; we can reset 2FA if that fails.",
    ),
    (
        "Webhooks delayed by hours",
        "Order webhooks arrive 2-3 hours late, which breaks our fulfilment.",
        "high",
        "outage",
        "Our webhook queue is backed up; we are adding capacity and will update you.",
    ),
    (
        "Cancel my subscription",
        "Please cancel our plan at the end of this month.",
        "medium",
        "billing",
        "Your plan will end on the last day of this month; you will not be charged again.",
    ),
    (
        "Where is the API documentation?",
        "I cannot find the docs for the REST API.",
        "low",
        "how-to",
        "The API reference is at docs > API; here is the direct link.",
    ),
    (
        "Upload fails for large files",
        "Files over 100 MB fail to upload with 'network error'.",
        "medium",
        "bug",
        "Uploads are limited to 100 MB today; we are working on larger uploads.",
    ),
    (
        "Account locked after trip",
        "My account was locked after I logged in from abroad.",
        "high",
        "account",
        "We have unlocked your account; it was a precaution after a login from abroad.",
    ),
    (
        "Bulk edit for tags",
        "Editing tags one by one is tedious; bulk edit would help.",
        "low",
        "feature-request",
        "Thanks, we have passed bulk tag editing to the product team.",
    ),
    (
        "Site down?",
        "Your status page says all good but I get 502 on every page.",
        "critical",
        "outage",
        "We see elevated 502 errors in one region and are failing over now.",
    ),
    (
        "Wrong timezone in reports",
        "Reports show UTC times, not our local time.",
        "medium",
        "how-to",
        "Set your workspace timezone under Settings > General; reports follow it.",
    ),
    (
        "Refund for unused seats",
        "We removed 10 seats mid-month; can we get a prorated refund?",
        "medium",
        "billing",
        "Seats removed mid-month are credited to your next invoice, prorated.",
    ),
    (
        "SAML setup question",
        "Which attributes must our IdP send for SAML login?",
        "low",
        "how-to",
        "Send email (NameID) and optionally firstName and lastName; see the SAML guide.",
    ),
    (
        "Search does not find new items",
        "Items created today do not show up in search.",
        "medium",
        "bug",
        "Search indexing is behind; new items should appear within the hour.",
    ),
    (
        "Delete my personal data",
        "Under GDPR I want all my personal data deleted.",
        "high",
        "account",
        "We have received your erasure request and will complete it within 30 days.",
    ),
    (
        "Mobile app crashes on start",
        "The Android app crashes immediately after the update.",
        "high",
        "bug",
        "We have pulled the update and are fixing the crash; the previous version works.",
    ),
    (
        "Add Slack integration",
        "Could you post new tickets to our Slack channel?",
        "low",
        "feature-request",
        "A Slack integration is planned; we have added your team to the beta list.",
    ),
    (
        "Payment failed but card is fine",
        "The card payment failed, but the card works everywhere else.",
        "medium",
        "billing",
        "Your bank declined the charge; please retry or contact your bank to allow it.",
    ),
    (
        "Emails going to spam",
        "All notification emails land in our spam folder.",
        "medium",
        "how-to",
        "Add our sending domain to your allow list; SPF and DKIM records are in the guide.",
    ),
    (
        "Everything is gone",
        "I logged in and our whole workspace is empty!!!",
        "critical",
        "outage",
        "We are checking your workspace right now; your data is backed up every hour.",
    ),
    (
        "Rename workspace",
        "How can I change the name of our workspace?",
        "low",
        "how-to",
        "Owners can rename the workspace under Settings > General > Name.",
    ),
]


def ticket(number: int) -> dict[str, str]:
    """Ticket ``T-<number>`` (from 1): the sample it repeats, from a customer of its own."""
    subject, body = SAMPLES[(number - 1) % len(SAMPLES)][:2]
    customer = CUSTOMERS[(number - 1) // len(SAMPLES) % len(CUSTOMERS)]
    return {"id": f"T-{number:05d}", "customer": customer, "subject": subject, "body": body}


def example_triage(subject: str) -> dict[str, object]:
    """The triage a person would give the sample with this subject (for demo replies)."""
    for sample_subject, _, urgency, category, response in SAMPLES:
        if sample_subject == subject:
            confidence = 0.95 if urgency in ("critical", "low") else 0.8
            return {
                "urgency": urgency,
                "category": category,
                "suggested_response": response,
                "confidence": confidence,
            }
    raise KeyError(subject)


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else len(SAMPLES)
    for number in range(1, count + 1):
        sys.stdout.write(json.dumps(ticket(number)) + "\n")
