DROP TABLE defender_machine_tags;
