//! Small statistics shared by the trainers and the evaluation report: rank correlation,
//! least-squares lines, and the squared Euclidean distance of two embeddings in f64.

/// Squared Euclidean distance, summed in f64.
pub fn squared_distance(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum()
}

/// Ranks 1..=n with ties given their average rank.
pub fn average_ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut ranks = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            ranks[k] = r;
        }
        i = j + 1;
    }
    ranks
}

/// Pearson correlation; `None` with fewer than two points or a constant side.
pub fn pearson(a: &[f64], b: &[f64]) -> Option<f64> {
    let n = a.len() as f64;
    if a.len() < 2 {
        return None;
    }
    let ma = a.iter().sum::<f64>() / n;
    let mb = b.iter().sum::<f64>() / n;
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    if saa == 0.0 || sbb == 0.0 {
        return None;
    }
    Some(sab / (saa * sbb).sqrt())
}

/// Spearman rank correlation (average ranks for ties).
pub fn spearman(a: &[f64], b: &[f64]) -> Option<f64> {
    pearson(&average_ranks(a), &average_ranks(b))
}

/// A line y = slope * x + intercept.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct LinearFit {
    pub slope: f64,
    pub intercept: f64,
}

impl LinearFit {
    /// The least-squares line of `ys` on `xs`; `None` when the xs do not vary (to f64
    /// rounding) or there are no points.
    pub fn least_squares(xs: &[f64], ys: &[f64]) -> Option<Self> {
        let n = xs.len() as f64;
        let mx = xs.iter().sum::<f64>() / n;
        let my = ys.iter().sum::<f64>() / n;
        let sxx: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
        let sxy: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
        (!xs.is_empty() && sxx > f64::EPSILON * n * (1.0 + mx * mx)).then(|| {
            let slope = sxy / sxx;
            LinearFit {
                slope,
                intercept: my - slope * mx,
            }
        })
    }

    /// The least-squares line through the origin, y = slope * x; `None` when every x is 0.
    pub fn through_origin(xs: &[f64], ys: &[f64]) -> Option<Self> {
        let sxx: f64 = xs.iter().map(|x| x * x).sum();
        let sxy: f64 = xs.iter().zip(ys).map(|(x, y)| x * y).sum();
        (sxx > 0.0).then_some(LinearFit {
            slope: sxy / sxx,
            intercept: 0.0,
        })
    }

    /// [`LinearFit::least_squares`], or a flat line through the mean when the xs do not
    /// vary, or the identity when there are no points.
    pub fn fit(xs: &[f64], ys: &[f64]) -> Self {
        LinearFit::least_squares(xs, ys).unwrap_or_else(|| match xs.len() {
            0 => LinearFit::IDENTITY,
            n => LinearFit {
                slope: 0.0,
                intercept: ys.iter().sum::<f64>() / n as f64,
            },
        })
    }

    /// [`LinearFit::through_origin`], or the identity when every x is 0.
    pub fn fit_proportional(xs: &[f64], ys: &[f64]) -> Self {
        LinearFit::through_origin(xs, ys).unwrap_or(LinearFit::IDENTITY)
    }

    pub const IDENTITY: LinearFit = LinearFit {
        slope: 1.0,
        intercept: 0.0,
    };

    pub fn apply(&self, x: f64) -> f64 {
        self.slope * x + self.intercept
    }
}
