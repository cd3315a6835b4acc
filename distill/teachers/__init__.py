"""Teachers label pairs of images with the aesthetic difference b - a (pair-label JSONL records)."""
