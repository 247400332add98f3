"""Reproductions of the chapter's figures: each a function that runs our code and writes a PNG
(for people) and a JSON file with every plotted series (for machines)."""
