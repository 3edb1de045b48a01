DROP TABLE coverage_gaps;
