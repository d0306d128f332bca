//! `pg.bigint`: placeholder until the conversion library lands.
use super::{Outputs, StepCtx, StepError};
use cutover_plan::PgBigintStep;
pub async fn run(_s: &PgBigintStep, ctx: &StepCtx<'_>) -> Result<Outputs, StepError> {
    Err(ctx.fail("pg.bigint is not available yet"))
}
