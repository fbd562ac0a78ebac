-- The day's revenue, from this partition of orders_daily.
{{ config(materialized="incremental", incremental_strategy="delete+insert", unique_key="dt") }}

select dt, sum(orders) as orders, sum(amount) as revenue
from {{ ref("orders_daily") }}
where dt = cast('{{ partition_dt() }}' as date)
group by dt
