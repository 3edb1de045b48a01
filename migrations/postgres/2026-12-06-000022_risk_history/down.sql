DROP TABLE risk_day_counts;
DROP TABLE risk_history;
