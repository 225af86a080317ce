"""One module per exercise; each defines ``CHECKS``, the list the grader runs in order."""
