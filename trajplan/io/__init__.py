"""Reading and writing CT volumes, label maps and result files."""
