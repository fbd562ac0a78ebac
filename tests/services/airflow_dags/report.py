from airflow.sdk import dag, get_current_context, task


@dag(schedule=None, catchup=False, is_paused_upon_creation=False)
def report() -> None:
    @task
    def build() -> None:
        conf = get_current_context()["dag_run"].conf
        run = conf["eventflow"]["run_id"]
        print(f"report of {conf['dt']}, batch {conf['batch']}, for eventflow run {run}")

    build()


report()
