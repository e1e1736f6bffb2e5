//! Lifetime value in the "buy till you die" family: [`summary`] turns transactions into each
//! customer's repeat frequency, recency, age and mean spend over a calibration period;
//! [`bgnbd`] fits the BG/NBD model (Fader, Hardie & Lee 2005, "Counting Your Customers the
//! Easy Way") and predicts purchases and P(alive); [`gamma_gamma`] fits spend per transaction
//! (Fader, Hardie & Lee 2005, "RFM and CLV"); [`value`] sums the discounted value over a
//! horizon. Checked against the papers' CDNOW figures.

pub mod bgnbd;
pub mod gamma_gamma;
mod optimize;
pub mod summary;
pub mod value;

/// Why a model could not be fitted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FitError {
    #[error("no customers to fit: the calibration period holds no purchases")]
    Empty,
    #[error("no customer bought again in the calibration period: nothing to fit")]
    NoRepeat,
    #[error("the likelihood did not converge: {0}")]
    NoConvergence(String),
}
