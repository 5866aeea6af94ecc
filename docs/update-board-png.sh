#!/usr/bin/env bash
# Refresh docs/board.png (README's picture of the board) from the browser test's screenshot: the page
# `mavps board --html` writes for the test's workspace (40 tasks in every status, 4 workers), as headless
# Chromium shows it. Needs chromium and chromium-driver (Debian packages) and selenium.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
MAVPS_ARTEFACTS="$out" MAVPS_REQUIRE_BROWSER=1 PYTHONPATH="$PWD" \
  python -m pytest -q -p no:randomly tests/test_board_html.py -k chromium
cp "$out/board.png" docs/board.png
echo "docs/board.png updated"
