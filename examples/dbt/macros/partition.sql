{#- The partition this run builds, from `--vars` ({"dt": "YYYY-MM-DD"}). The value comes from an
    event (a file name), so it is checked before it goes into SQL. -#}
{% macro partition_dt() %}
  {%- set dt = var("dt") -%}
  {%- if not modules.re.match("^[0-9]{4}-[0-9]{2}-[0-9]{2}$", dt) -%}
    {{ exceptions.raise_compiler_error("var dt must be YYYY-MM-DD, got " ~ dt) }}
  {%- endif -%}
  {{ return(dt) }}
{% endmacro %}
