"""Shell step of the action-items example: count items per owner; prints JSON to stdout."""

import json
import sys
from collections import Counter

items = json.loads(sys.argv[1])
counts = Counter(item["owner"] for item in items)
print(json.dumps({"total": len(items), "by_owner": dict(sorted(counts.items()))}))
