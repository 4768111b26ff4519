"""Verifies webhook deliveries with the Standard Webhooks specification's own Python library.

Reads {"secret": "whsec_...", "deliveries": [{"id", "timestamp", "signature", "body"}]} on stdin
and prints one verdict per delivery as JSON: whether the delivery verifies, and whether the same
verifier refuses it with its body tampered, its timestamp ten minutes old (same signature), and
another secret. A receiver that accepted any of those would not be verifying anything.
"""

import json
import sys

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def verifies(secret, delivery, body=None, timestamp=None):
    headers = {
        "webhook-id": delivery["id"],
        "webhook-timestamp": str(timestamp or delivery["timestamp"]),
        "webhook-signature": delivery["signature"],
    }
    try:
        Webhook(secret).verify(body if body is not None else delivery["body"], headers)
        return True
    except WebhookVerificationError:
        return False


def main():
    request = json.load(sys.stdin)
    secret = request["secret"]
    wrong = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk="
    verdicts = []
    for d in request["deliveries"]:
        verdicts.append(
            {
                "id": d["id"],
                "verified": verifies(secret, d),
                "tampered_refused": not verifies(secret, d, body=d["body"] + " "),
                "old_refused": not verifies(secret, d, timestamp=int(d["timestamp"]) - 600),
                "wrong_secret_refused": not verifies(wrong, d),
            }
        )
    json.dump(verdicts, sys.stdout)


if __name__ == "__main__":
    main()
