"""Shell step of the notes-to-backlog example: read the run's outputs, print Markdown."""

import json
import sys
from pathlib import Path

steps = Path(sys.argv[1]) / "steps"
items = json.loads(next(steps.glob("*-score.json")).read_text())
questions_file = next(steps.glob("*-questions.json"), None)
questions = json.loads(questions_file.read_text()) if questions_file else []
asked = {question["title"]: question["question"] for question in questions}

print("# Backlog\n")
for item in sorted(items, key=lambda item: -item["readiness"]):
    print(f"## {item['title']} ({item['type']}, readiness {item['readiness']})\n")
    print(f"{item['detail']}\n")
    print(f"Owner: {item.get('owner') or 'unassigned'}\n")
    if item["title"] in asked:
        print(f"> Question: {asked[item['title']]}\n")
