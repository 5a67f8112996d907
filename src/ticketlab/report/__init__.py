"""Reports: tables, figures and pages drawn from the run store only."""
