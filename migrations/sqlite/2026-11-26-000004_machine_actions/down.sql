DROP TABLE machine_actions;
