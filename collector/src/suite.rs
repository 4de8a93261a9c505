//! Suites: which probes run and how hard each tries.

use std::time::Duration;

use fathom_datasets::Category;

use crate::probe::{Effort, Probe};
use crate::probes;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Suite {
    /// Every system probe briefly: a minute or less in all.
    Quick,
    /// More repetitions and time per probe (about five minutes).
    Standard,
    /// Long consistency runs (30–60 minutes).
    Deep,
}

impl Suite {
    pub fn name(self) -> &'static str {
        match self {
            Suite::Quick => "quick",
            Suite::Standard => "standard",
            Suite::Deep => "deep",
        }
    }

    pub fn effort(self) -> Effort {
        match self {
            Suite::Quick => Effort {
                budget: Duration::from_secs(3),
                warmup: Duration::from_millis(200),
                min_reps: 5,
                max_reps: 50,
                target_cv: 0.02,
            },
            Suite::Standard => Effort {
                budget: Duration::from_secs(20),
                warmup: Duration::from_secs(1),
                min_reps: 10,
                max_reps: 200,
                target_cv: 0.02,
            },
            Suite::Deep => Effort {
                budget: Duration::from_secs(120),
                warmup: Duration::from_secs(3),
                min_reps: 30,
                max_reps: 2000,
                target_cv: 0.01,
            },
        }
    }

    /// The probes of the suite: every registered probe of the four system categories.
    pub fn probes(self) -> Vec<Box<dyn Probe>> {
        probes::all()
            .into_iter()
            .filter(|p| {
                matches!(
                    Category::of_probe(p.id()),
                    Some(Category::Cpu | Category::Memory | Category::Storage | Category::Network)
                )
            })
            .collect()
    }
}
