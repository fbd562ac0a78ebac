-- One partition per run: the orders of day `dt` per customer. delete+insert on `dt` makes a
-- re-run of the same partition (a retry, a late file) replace it instead of adding to it.
{{ config(materialized="incremental", incremental_strategy="delete+insert", unique_key="dt") }}

select
    cast('{{ partition_dt() }}' as date) as dt,
    customer,
    count(*) as orders,
    sum(amount) as amount
from read_csv('landing/orders/dt={{ partition_dt() }}/orders.csv', header = true)
group by customer
