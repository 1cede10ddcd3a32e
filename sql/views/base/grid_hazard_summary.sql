-- 智网 hazards per grid cell, town and category, for the dispatch centre: events reported (each event by its latest report), open, closed, and the median hours from report to close of the closed ones that say when (exact: the middle one, or the mean of the middle two). Read with your own grants.
with reports as (
    select
        r.event_number,
        r.grid_code,
        r.hazard_category,
        r.handling_status,
        r.reported_at,
        r.closed_at,
        row_number() over (partition by r.event_number order by r._ingested_at desc, r._row_number desc) as newest
    from lake.silver.grid_hazard_report as r
),
events as (
    select
        e.grid_code,
        e.hazard_category,
        e.handling_status = '已办结' as is_closed,
        case when e.handling_status = '已办结' then cast(date_diff('second', e.reported_at, e.closed_at) as double) / 3600 end
            as hours_to_close
    from reports as e
    where e.newest = 1
),
ranked as (
    select
        v.*,
        row_number() over (
            partition by v.grid_code, v.hazard_category, v.hours_to_close is null order by v.hours_to_close
        ) as closed_rank,
        count(*) over (partition by v.grid_code, v.hazard_category, v.hours_to_close is null) as closed_events
    from events as v
)
select
    k.grid_code,
    g.town_code,
    k.hazard_category,
    count(*) as reported,
    count_if(not k.is_closed) as open,
    count_if(k.is_closed) as closed,
    avg(k.hours_to_close) filter (
        where k.hours_to_close is not null
            and k.closed_rank in ((k.closed_events + 1) / 2, (k.closed_events + 2) / 2)
    ) as median_hours_to_close
from ranked as k
left join lake.base.grid as g on g.grid_code = k.grid_code and g.is_current
group by k.grid_code, g.town_code, k.hazard_category
