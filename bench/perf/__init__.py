"""`python -m bench run`: benchmark cases and profiles, timing (pytest-benchmark), memory, the
bandwidth bound, peers and the DDP sweep."""
