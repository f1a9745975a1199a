"""Everything stepline keeps on disk: run folders, their state, locks and atomic writes."""
