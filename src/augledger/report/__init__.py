"""Human-facing views of pipelines and ledgers: preview grids and summaries."""
