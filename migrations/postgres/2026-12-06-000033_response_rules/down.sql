DROP TABLE rule_decisions;
DROP TABLE response_rules;
