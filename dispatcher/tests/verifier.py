"""Verify one captured Kolbak delivery with the official Standard Webhooks package.

Usage: verifier.py BODY_FILE HEADERS_JSON_FILE SECRET

BODY_FILE holds the raw request body, HEADERS_JSON_FILE a JSON object of the request headers,
SECRET the subscription's `whsec_...` signing secret. Uses
`standardwebhooks.webhooks.Webhook(secret).verify(payload, headers)`, exactly as a consumer would.

Exit status: 0 verified, 1 rejected, 2 usage error or package missing.
"""

import json
import sys


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        from standardwebhooks.webhooks import Webhook, WebhookVerificationError
    except ImportError as error:
        print(f"standardwebhooks is not installed: {error}", file=sys.stderr)
        return 2
    body_path, headers_path, secret = argv[1:]
    with open(body_path, "rb") as body_file:
        body = body_file.read()
    with open(headers_path, encoding="utf-8") as headers_file:
        headers = json.load(headers_file)
    try:
        Webhook(secret).verify(body, headers)
    except WebhookVerificationError as error:
        print(f"rejected: {error}")
        return 1
    print("verified")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
