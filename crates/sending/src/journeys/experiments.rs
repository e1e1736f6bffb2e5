//! Journeys and experiments: what saving a journey checks of the experiments its steps name,
//! and the path a person takes at a split that names one.

use missive_core::Profile;
use missive_store::JourneyInstance;
use serde_json::json;

use super::context::{SPLIT_EXPERIMENT, visits_of};
use super::{Action, Compiled, DefinitionError, EXIT, JourneyError, Journeys, MessageClass};

impl Journeys {
    /// A step's experiment exists and fits: a split's paths are exactly its variants (of an
    /// experiment of kind `branch`); a send's experiment is of another kind.
    pub(super) async fn check_experiment(
        &self,
        step: &missive_journey::Step,
        class: MessageClass,
    ) -> Result<(), JourneyError> {
        let invalid = |why: String| Err(JourneyError::Definition(DefinitionError::Invalid(why)));
        let (name, paths) = match &step.action {
            Action::Split {
                experiment: Some(name),
                paths,
            } => (name, Some(paths)),
            Action::Send {
                experiment: Some(name),
                ..
            } => (name, None),
            _ => return Ok(()),
        };
        let e = match crate::experiments::Experiments::new(self.store().clone())
            .get(name)
            .await
        {
            Ok(e) => e,
            Err(crate::experiments::ExperimentError::NotFound(_)) => {
                return invalid(format!(
                    "step {:?} names experiment {name:?}, which does not exist: create it first",
                    step.id
                ));
            }
            Err(crate::experiments::ExperimentError::Store(e)) => return Err(e.into()),
            Err(e) => return invalid(format!("step {:?}: {e}", step.id)),
        };
        if class == MessageClass::Transactional
            && e.definition.varies == missive_experiment::definition::Varies::Holdout
        {
            return invalid(format!(
                "step {:?}: experiment {name:?} holds messages back, which a transactional journey must not do",
                step.id
            ));
        }
        if e.definition.bandit.is_some() {
            return invalid(format!(
                "step {:?}: experiment {name:?} is a bandit, which runs in a broadcast's waves",
                step.id
            ));
        }
        let branch = e.definition.varies == missive_experiment::definition::Varies::Branch;
        match paths {
            Some(paths) => {
                if !branch {
                    return invalid(format!(
                        "step {:?}: a split's experiment varies \"branch\"; {name:?} varies {:?}",
                        step.id,
                        e.definition.varies.as_str()
                    ));
                }
                let mut want: Vec<&str> = e.definition.variants.iter().map(|v| v.name.as_str()).collect();
                let mut got: Vec<&str> = paths.iter().filter_map(|p| p.variant.as_deref()).collect();
                want.sort_unstable();
                got.sort_unstable();
                if want != got {
                    return invalid(format!(
                        "step {:?}: the paths name variants {got:?}; experiment {name:?} has {want:?}: one path per variant",
                        step.id
                    ));
                }
            }
            None if branch => {
                return invalid(format!(
                    "step {:?}: experiment {name:?} varies \"branch\": name it in a split step",
                    step.id
                ));
            }
            None => {}
        }
        Ok(())
    }

    /// The path of an experiment's split: the person's variant while it runs (kept on the
    /// instance, so that the messages after it carry the experiment, and recorded as an
    /// exposure now), the winner's once concluded, else the default variant's. A missing
    /// experiment, or one with no path for the variant, takes the first path, uncounted.
    pub(super) async fn experiment_path(
        &self,
        instance: &mut JourneyInstance,
        name: &str,
        paths: &[missive_journey::SplitPath],
        person: &Profile,
        def: &Compiled,
        step: &str,
    ) -> Result<String, JourneyError> {
        let e = match crate::experiments::Experiments::new(self.store().clone())
            .get(name)
            .await
        {
            Ok(e) => Some(e),
            Err(crate::experiments::ExperimentError::Store(e)) => return Err(e.into()),
            Err(e) => {
                tracing::error!(experiment = name, error = %e, "journey split: experiment unavailable; first path taken");
                None
            }
        };
        let first = || paths.first().map_or_else(|| EXIT.to_string(), |p| p.next.clone());
        let Some(e) = e else { return Ok(first()) };
        let treatment = e.treatment(instance.profile_id.as_str());
        let variant = treatment.variant();
        let Some(path) = paths
            .iter()
            .find(|p| p.variant.as_deref() == Some(variant.name.as_str()))
        else {
            // The experiment changed since the journey was saved: not counted, first path.
            tracing::error!(experiment = name, variant = %variant.name, journey = %def.name, "journey split: no path for the variant; first path taken, not counted");
            return Ok(first());
        };
        // Counted when the split is taken (a path may send nothing, or later than another),
        // and only for people marketing may reach: the others are never assigned.
        let reachable =
            def.def.class == MessageClass::Transactional || crate::policy::has_marketing_consent(person);
        if treatment.exposed() && reachable {
            if let Some(ctx) = instance.context.as_object_mut() {
                ctx.insert(
                    SPLIT_EXPERIMENT.into(),
                    json!({"name": name, "variant": variant.name}),
                );
            }
            let applied = crate::exposure::Applied {
                experiment: name.to_owned(),
                variant: variant.clone(),
                exposed: true,
            };
            let source = missive_core::MessageSource::Journey(def.name.clone()).to_string();
            let unit = format!("{}:{step}:{}", instance.id, visits_of(&instance.context, step));
            crate::exposure::record_exposure(&self.engine, person, &applied, &unit, &source).await;
        }
        Ok(path.next.clone())
    }
}
