DROP TABLE risk_history;
