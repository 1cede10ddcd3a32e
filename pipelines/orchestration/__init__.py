"""What Airflow needs from the project: assets, shared DAG arguments, the local Airflow service."""
