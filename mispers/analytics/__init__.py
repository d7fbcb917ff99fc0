"""Analytics: the PII-free episode record, its store (DuckDB or Parquet) and the inspection
report built from it."""
