//! Flags that pick one of a few ways of doing something, or `auto`
//! (`-task-flow-mode`, `-task-socketstat-owners`).

use std::str::FromStr;

/// One of the ways a [`Choice`] flag can name.
pub trait Named: Copy + 'static {
    /// Every way, in the order `auto` tries them.
    const ALL: &'static [Self];
    /// What the flag calls it.
    fn name(self) -> &'static str;
}

/// What such a flag asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Choice<T> {
    /// Every way in order, the first that works.
    #[default]
    Auto,
    /// This way only.
    Only(T),
}

impl<T: Named> Choice<T> {
    /// The ways to try, in order.
    pub fn candidates(self) -> Vec<T> {
        match self {
            Self::Auto => T::ALL.to_vec(),
            Self::Only(way) => vec![way],
        }
    }
}

impl<T: Named> FromStr for Choice<T> {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "auto" {
            return Ok(Self::Auto);
        }
        T::ALL
            .iter()
            .find(|way| way.name() == s)
            .map(|way| Self::Only(*way))
            .ok_or_else(|| {
                let names: Vec<&str> = T::ALL.iter().map(|way| way.name()).collect();
                format!("unknown value {s:?} (expected auto, {})", names.join(", "))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Way {
        Fast,
        Safe,
    }

    impl Named for Way {
        const ALL: &'static [Self] = &[Self::Fast, Self::Safe];

        fn name(self) -> &'static str {
            match self {
                Self::Fast => "fast",
                Self::Safe => "safe_way",
            }
        }
    }

    #[test]
    fn parses_auto_and_every_name() {
        assert_eq!("auto".parse(), Ok(Choice::<Way>::Auto));
        assert_eq!("fast".parse(), Ok(Choice::Only(Way::Fast)));
        assert_eq!("safe_way".parse(), Ok(Choice::Only(Way::Safe)));
        assert_eq!(Choice::<Way>::default(), Choice::Auto);
    }

    #[test]
    fn rejects_others_naming_the_choices() {
        assert_eq!(
            "Fast".parse::<Choice<Way>>(),
            Err(r#"unknown value "Fast" (expected auto, fast, safe_way)"#.to_owned())
        );
        assert!("".parse::<Choice<Way>>().is_err());
    }

    #[test]
    fn auto_tries_every_way_in_order() {
        assert_eq!(Choice::<Way>::Auto.candidates(), [Way::Fast, Way::Safe]);
        assert_eq!(Choice::Only(Way::Safe).candidates(), [Way::Safe]);
    }
}
