//! `sql`: statements on PostgreSQL with bind parameters, in one transaction by
//! default. The outputs are the first row of the last statement, `rows` and
//! `rows_affected`.

use super::PG_CONNECT_TIMEOUT;
use super::{Outputs, StepCtx, StepError};
use cutover_plan::SqlStep;

pub async fn run(s: &SqlStep, ctx: &StepCtx<'_>) -> Result<Outputs, StepError> {
    let dsn = ctx.render_dsn(&s.dsn, "the dsn")?;
    let mut statements = vec![];
    for (i, st) in s.statements.iter().enumerate() {
        let params = st
            .params
            .iter()
            .enumerate()
            .map(|(j, p)| ctx.render(p, &format!("parameter ${} of statement {}", j + 1, i + 1)))
            .collect::<Result<Vec<_>, _>>()?;
        statements.push((st.sql.clone(), params));
    }
    let client = cutover_pg::connect(&dsn, PG_CONNECT_TIMEOUT).await.map_err(|e| ctx.fail(e.to_string()))?;
    cutover_pg::run_statements(&client, &statements, s.transaction)
        .await
        .map_err(|e| ctx.fail(format!("on {}: {e}", cutover_pg::describe(&dsn))))
}
